//! The one error type of this crate.

use crate::key::TransactionKey;
use crate::machine::State;
use sip_message::{Method, ParseError};

/// Why the transaction layer refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A header the layer needs (Via, CSeq, From, To, Call-ID) is malformed or missing.
    #[error("malformed message: {source}")]
    Parse {
        /// What the parser said.
        #[from]
        source: ParseError,
    },
    /// The top Via of a request we send has no `branch` (RFC 3261 §8.1.1.7).
    #[error("top Via has no branch parameter")]
    MissingBranch,
    /// The branch of a request we send lacks the `z9hG4bK` cookie (RFC 3261 §8.1.1.7).
    #[error("branch {branch:?} lacks the RFC 3261 magic cookie z9hG4bK")]
    NotRfc3261Branch {
        /// The branch as written.
        branch: String,
    },
    /// ACK creates no transaction (RFC 3261 §17): use `send_ack`.
    #[error("ACK is not sent in a transaction; use send_ack")]
    AckNotTransaction,
    /// `send_ack` was given another method.
    #[error("{method} is not an ACK")]
    NotAck {
        /// The method given.
        method: Method,
    },
    /// A client transaction with this branch and method is alive already.
    #[error("transaction {key} already exists")]
    TransactionExists {
        /// The key.
        key: TransactionKey,
    },
    /// No such transaction (never created, or terminated).
    #[error("no transaction {key}")]
    NoSuchTransaction {
        /// The key.
        key: TransactionKey,
    },
    /// A server command on a client transaction, or the reverse.
    #[error("transaction {key} has the wrong role or kind for this command")]
    WrongTransactionKind {
        /// The key.
        key: TransactionKey,
    },
    /// A status code outside 100..=699 (RFC 3261 §7.2).
    #[error("invalid status code {status}")]
    InvalidStatus {
        /// The status.
        status: u16,
    },
    /// The transaction's state does not allow this response (RFC 3261 §17.2).
    #[error("transaction {key} in state {state} cannot send a {status}")]
    InvalidState {
        /// The key.
        key: TransactionKey,
        /// Its state.
        state: State,
        /// The refused status.
        status: u16,
    },
}

//! Transaction identity and matching (RFC 3261 §17.1.3, §17.2.3, §9.2).

use crate::error::Error;
use bytes::Bytes;
use sip_message::{
    HeaderName, Headers, Host, Method, ParseError, Request, Response, Via, ViaTransport,
};
use std::fmt;
use std::sync::Arc;

/// RFC 3261 §8.1.1.7: a branch starting with this cookie was built by an
/// RFC 3261 element and is unique across space and time.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Which side of a transaction we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the request (RFC 3261 §17.1).
    Client,
    /// We received the request (RFC 3261 §17.2).
    Server,
}

/// Identifies one transaction in a [`TransactionLayer`](crate::TransactionLayer).
///
/// - Client transactions (RFC 3261 §17.1.3): the top Via `branch` and the
///   request method (a response's CSeq method).
/// - Server transactions (§17.2.3): `branch`, the top Via `sent-by`, and the
///   method, ACK counting as INVITE.
/// - Server transactions for requests whose branch lacks the `z9hG4bK`
///   cookie (RFC 2543 peers, §17.2.3): Request-URI, From tag, To tag,
///   Call-ID, CSeq number and method (ACK as INVITE), and the top Via.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionKey {
    role: Role,
    id: KeyId,
}

/// Hashes the branch alone (or the RFC 2543 tuple): keys that are equal have equal
/// branches, so this agrees with `Eq`, and a branch is unique to its transaction but
/// for the method and the rare peer that reuses one. Hashing every field, each a
/// separate write into SipHash, was a tenth of a bridged call's CPU.
impl std::hash::Hash for TransactionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.id {
            KeyId::Branch { branch, .. } => state.write(branch),
            KeyId::Legacy(legacy) => legacy.hash(state),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Branch {
        branch: Bytes,
        /// Server side only.
        sent_by: Option<Arc<SentBy>>,
        method: Method,
    },
    Legacy(Box<LegacyId>),
}

/// A Via sent-by, normalised for comparison: host lower-cased, port made
/// explicit with the transport's default (RFC 3261 §18.2.1, §19.1.4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SentBy {
    /// An address as parsed; a name lower-cased (a slice of the message when it
    /// already is). Shared by the key's clones (a key is cloned about 18 times per
    /// bridged call; the host formatted as text had cost two allocations each time).
    host: Host,
    port: u16,
}

/// The RFC 2543 matching tuple (RFC 3261 §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LegacyId {
    request_uri: Bytes,
    from_tag: Option<Bytes>,
    to_tag: Option<Bytes>,
    call_id: Bytes,
    cseq: u32,
    method: Method,
    top_via: Bytes,
}

/// ACK is matched against the INVITE it acknowledges (RFC 3261 §17.2.3).
fn server_method(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        m => m.clone(),
    }
}

fn sent_by(via: &Via) -> SentBy {
    let port = via.port.unwrap_or(match &via.transport {
        ViaTransport::Known(t) => t.default_port(),
        ViaTransport::Other(_) => 5060,
    });
    let host = match &via.host {
        Host::Domain(name) if name.iter().any(u8::is_ascii_uppercase) => {
            Host::Domain(Bytes::from(name.to_ascii_lowercase()))
        }
        other => other.clone(),
    };
    SentBy { host, port }
}

/// The raw value of a single-valued header, or the error a missing one gives.
pub(crate) fn raw(headers: &Headers, name: HeaderName) -> Result<Bytes, ParseError> {
    headers
        .get(&name)
        .cloned()
        .ok_or(ParseError::MissingHeader(name))
}

/// The first Via value as written (a comma-joined first line split).
pub(crate) fn raw_top_via(headers: &Headers) -> Result<Bytes, ParseError> {
    headers
        .values(&HeaderName::Via)
        .next()
        .ok_or(ParseError::MissingHeader(HeaderName::Via))
}

impl TransactionKey {
    /// The client key of a request we send (§17.1.3). The top Via must carry
    /// an RFC 3261 branch: we only create transactions that are matchable
    /// that way.
    pub fn client_for_request(request: &Request) -> Result<TransactionKey, Error> {
        let via = request.headers.top_via_ref()?;
        let branch = via.branch().ok_or(Error::MissingBranch)?;
        if !via.has_magic_cookie() {
            return Err(Error::NotRfc3261Branch {
                branch: String::from_utf8_lossy(branch).into_owned(),
            });
        }
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: Bytes::copy_from_slice(branch),
                sent_by: None,
                method: request.method.clone(),
            },
        })
    }

    /// The client key a response matches (§17.1.3): its top Via branch and
    /// its CSeq method.
    pub fn client_for_response(response: &Response) -> Result<TransactionKey, ParseError> {
        let via = response.headers.top_via_ref()?;
        let cseq = response.headers.cseq()?;
        let branch = via.branch().ok_or(ParseError::BadHeader {
            name: HeaderName::Via,
        })?;
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: Bytes::copy_from_slice(branch),
                sent_by: None,
                method: cseq.method,
            },
        })
    }

    /// The server key a received request matches (§17.2.3), ACK counting as
    /// INVITE; the RFC 2543 tuple when the branch lacks the magic cookie.
    pub fn server_for_request(request: &Request) -> Result<TransactionKey, ParseError> {
        Self::server_for_request_as(request, server_method(&request.method))
    }

    /// The server key of `request` as if its method were `method`: §9.2 finds
    /// the transaction a CANCEL targets this way.
    pub fn server_for_request_as(
        request: &Request,
        method: Method,
    ) -> Result<TransactionKey, ParseError> {
        let headers = &request.headers;
        let via = headers.top_via_ref()?;
        let id = match via.branch() {
            Some(branch) if via.has_magic_cookie() => KeyId::Branch {
                branch: Bytes::copy_from_slice(branch),
                sent_by: Some(Arc::new(sent_by(&via))),
                method,
            },
            _ => {
                let from = headers.from_ref()?;
                let to = headers.to_ref()?;
                let cseq = headers.cseq()?;
                KeyId::Legacy(Box::new(LegacyId {
                    request_uri: request.uri.clone(),
                    from_tag: from.tag().map(Bytes::copy_from_slice),
                    to_tag: to.tag().map(Bytes::copy_from_slice),
                    call_id: raw(headers, HeaderName::CallId)?,
                    cseq: cseq.seq,
                    method,
                    top_via: raw_top_via(headers)?,
                }))
            }
        };
        Ok(TransactionKey {
            role: Role::Server,
            id,
        })
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True for a client transaction.
    pub fn is_client(&self) -> bool {
        self.role == Role::Client
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        match &self.id {
            KeyId::Branch { method, .. } => method,
            KeyId::Legacy(l) => &l.method,
        }
    }

    /// The top Via branch, for RFC 3261 keys.
    pub fn branch(&self) -> Option<&[u8]> {
        match &self.id {
            KeyId::Branch { branch, .. } => Some(branch),
            KeyId::Legacy(_) => None,
        }
    }

    /// True for a key built by the RFC 2543 fallback.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self.id, KeyId::Legacy(_))
    }

    /// For an RFC 2543 key, the same key without a To tag, and the To tag it
    /// had: an ACK carries the tag of the response, which the INVITE lacked.
    pub(crate) fn without_to_tag(&self) -> Option<(TransactionKey, Bytes)> {
        match &self.id {
            KeyId::Legacy(l) => {
                let tag = l.to_tag.clone()?;
                let mut stripped = (**l).clone();
                stripped.to_tag = None;
                Some((
                    TransactionKey {
                        role: self.role,
                        id: KeyId::Legacy(Box::new(stripped)),
                    },
                    tag,
                ))
            }
            KeyId::Branch { .. } => None,
        }
    }
}

impl fmt::Display for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        match &self.id {
            KeyId::Branch { branch, method, .. } => {
                write!(f, "{role} {method} {}", String::from_utf8_lossy(branch))
            }
            KeyId::Legacy(l) => write!(
                f,
                "{role} {} rfc2543 call-id {} cseq {}",
                l.method,
                String::from_utf8_lossy(&l.call_id),
                l.cseq
            ),
        }
    }
}

//! Joining the media of two plain calls (no bridge): what the control API's
//! add-participant does to make a 1:1 call a three-party one. Each call keeps its own
//! dialog and ends on its own; only their RTP is relayed by the runtime's media plane
//! (RFC 7092 §3.1.3, as a media-anchored bridge relays it).

use super::Engine;
use crate::state::CallState;
use crate::types::{CallError, CallHandle, CallKind, Event, MediaInstruction};

impl Engine {
    /// Relays the RTP of `a` and `b` to each other ([`MediaInstruction::Join`]): both
    /// must be audio/video calls of ours with their own media (not signalling-only), not
    /// legs of a back-to-back call, and established. Either call may still end alone: its
    /// `Close` unjoins the other, which falls back to its own flow (silence).
    pub fn join_media(&mut self, a: CallHandle, b: CallHandle) -> Result<(), CallError> {
        self.joinable(a, b)?;
        self.events.push_back(Event::Media {
            call: a,
            instruction: MediaInstruction::Join { peer: b },
        });
        Ok(())
    }

    /// Ends the relay [`join_media`](Self::join_media) started: each call's own flow
    /// resumes ([`MediaInstruction::Unjoin`]).
    pub fn unjoin_media(&mut self, a: CallHandle, b: CallHandle) -> Result<(), CallError> {
        for call in [a, b] {
            if !self.calls.contains_key(&call) {
                return Err(CallError::NoSuchCall(call));
            }
        }
        self.events.push_back(Event::Media {
            call: a,
            instruction: MediaInstruction::Unjoin { peer: b },
        });
        Ok(())
    }

    fn joinable(&self, a: CallHandle, b: CallHandle) -> Result<(), CallError> {
        if a == b {
            return Err(CallError::InvalidArgument {
                what: "calls to join",
                problem: format!("{a} cannot be joined to itself"),
            });
        }
        for call in [a, b] {
            let c = self.calls.get(&call).ok_or(CallError::NoSuchCall(call))?;
            if c.kind != CallKind::AudioVideo {
                return Err(CallError::InvalidArgument {
                    what: "calls to join",
                    problem: format!("{call} is not an audio/video call"),
                });
            }
            if c.state != CallState::Established {
                return Err(CallError::InvalidArgument {
                    what: "calls to join",
                    problem: format!("{call} is {}, not established", c.state),
                });
            }
            if c.bridge.is_some() || c.passthrough || c.media_port.is_none() {
                return Err(CallError::InvalidArgument {
                    what: "calls to join",
                    problem: format!(
                        "{call} has no media of its own here (a bridge leg or signalling-only)"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::EngineConfig;
    use crate::types::{ApplicationEndpointSettings, ConversationSettings};

    #[test]
    fn only_established_calls_of_our_own_media_are_joined() {
        let mut engine = Engine::new(EngineConfig::default());
        let endpoint = engine
            .add_application_endpoint(ApplicationEndpointSettings::new("sip:app@127.0.0.1"))
            .unwrap();
        let conversation = engine
            .new_conversation(endpoint, ConversationSettings::default())
            .unwrap();
        let a = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
        let b = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
        let im = engine
            .new_call(conversation, CallKind::InstantMessaging)
            .unwrap();
        let refused = |r: Result<(), CallError>| match r {
            Err(CallError::InvalidArgument { what, problem }) => {
                assert_eq!(what, "calls to join");
                problem
            }
            other => panic!("{other:?}"),
        };
        assert!(refused(engine.join_media(a, a)).contains("itself"));
        assert!(refused(engine.join_media(a, b)).contains("not established"));
        assert!(refused(engine.join_media(im, a)).contains("audio/video"));
        let gone = CallHandle(9999);
        assert!(matches!(
            engine.join_media(gone, a),
            Err(CallError::NoSuchCall(c)) if c == gone
        ));
        assert!(matches!(
            engine.unjoin_media(gone, a),
            Err(CallError::NoSuchCall(_))
        ));
        // Nothing was asked of the media layer.
        while let Some(event) = engine.poll_event() {
            assert!(!matches!(event, Event::Media { .. }), "{event:?}");
        }
        engine.unjoin_media(a, b).unwrap();
        assert!(std::iter::from_fn(|| engine.poll_event()).any(|e| e
            == Event::Media {
                call: a,
                instruction: MediaInstruction::Unjoin { peer: b },
            }));
    }
}

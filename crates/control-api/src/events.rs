//! The event model of the control API: the `data` of call events in the shape of Azure
//! Communication Services Call Automation, and their envelope, a CloudEvents 1.0 event in
//! the JSON format (CloudEvents spec v1.0.2 §3, JSON Event Format §3).
//!
//! An application raises an [`ApiEvent`] (a type, a subject, a JSON `data`); the
//! [`EventHub`](crate::hub::EventHub) gives it its per-application sequence number and wraps
//! it into a [`CloudEvent`], the one form that both webhooks and the event stream carry.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The CloudEvents version this crate produces (CloudEvents v1.0.2 §3.1.1 `specversion`).
pub const SPEC_VERSION: &str = "1.0";

/// The media type of a CloudEvent in structured mode (CloudEvents HTTP Protocol Binding
/// §3.2), the `content-type` of every webhook POST.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// The names of the events, as Call Automation spells them (the CloudEvent `type`).
pub mod event_type {
    /// An incoming call waits for `answer`, `reject` or `redirect`.
    pub const INCOMING_CALL: &str = "IncomingCall";
    /// The call is established.
    pub const CALL_CONNECTED: &str = "CallConnected";
    /// The call has ended.
    pub const CALL_DISCONNECTED: &str = "CallDisconnected";
    /// `create call` did not reach a connected call.
    pub const CREATE_CALL_FAILED: &str = "CreateCallFailed";
    /// `answer` failed.
    pub const ANSWER_FAILED: &str = "AnswerFailed";
    /// `connect` to an existing call failed.
    pub const CONNECT_FAILED: &str = "ConnectFailed";
    /// The participant list changed (carries `sequenceNumber`).
    pub const PARTICIPANTS_UPDATED: &str = "ParticipantsUpdated";
    /// `add participant` reached the invitee.
    pub const ADD_PARTICIPANT_SUCCEEDED: &str = "AddParticipantSucceeded";
    /// `add participant` failed.
    pub const ADD_PARTICIPANT_FAILED: &str = "AddParticipantFailed";
    /// `cancel add participant` succeeded.
    pub const CANCEL_ADD_PARTICIPANT_SUCCEEDED: &str = "CancelAddParticipantSucceeded";
    /// `cancel add participant` failed.
    pub const CANCEL_ADD_PARTICIPANT_FAILED: &str = "CancelAddParticipantFailed";
    /// `remove participant` succeeded.
    pub const REMOVE_PARTICIPANT_SUCCEEDED: &str = "RemoveParticipantSucceeded";
    /// `remove participant` failed.
    pub const REMOVE_PARTICIPANT_FAILED: &str = "RemoveParticipantFailed";
    /// The transfer target accepted (with its final SIP status).
    pub const CALL_TRANSFER_ACCEPTED: &str = "CallTransferAccepted";
    /// The transfer failed (with the target's final SIP status and Reason).
    pub const CALL_TRANSFER_FAILED: &str = "CallTransferFailed";
    /// The call went to a parking orbit.
    pub const CALL_PARKED: &str = "CallParked";
    /// `retrieve`: the target answered and was joined to the parked call.
    pub const RETRIEVE_SUCCEEDED: &str = "RetrieveSucceeded";
    /// `retrieve`: the target did not answer (its status); the call stays parked.
    pub const RETRIEVE_FAILED: &str = "RetrieveFailed";
    /// A `play` finished.
    pub const PLAY_COMPLETED: &str = "PlayCompleted";
    /// A DTMF tone was received.
    pub const TONE_RECEIVED: &str = "ToneReceived";
}

/// How an operation ended (Call Automation `resultInformation`): `code` is an HTTP-like
/// status (200, 400, 408, 486...), `subCode` refines it, `message` says it in words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultInformation {
    /// The status, HTTP-like (for SIP failures the SIP final status).
    pub code: u16,
    /// A finer reason; 0 when there is none.
    pub sub_code: u32,
    /// The reason in words.
    pub message: String,
}

/// The `data` of every call event, in the shape of Call Automation: the call, its
/// correlation id, the operation context the action was given and how it ended; the
/// event-specific fields (`participants`, `sequenceNumber`, `sipStatus`...) flattened
/// beside them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallEventData {
    /// The call this event is about.
    pub call_connection_id: String,
    /// The SIP Call-ID of the main leg, or a UUID-like id.
    pub correlation_id: String,
    /// The `operationContext` the action that caused this event was given.
    pub operation_context: Option<String>,
    /// How the operation ended, for result events.
    pub result_information: Option<ResultInformation>,
    /// Event-specific fields, flattened into `data`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An event as the application raises it, before the hub gives it a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiEvent {
    /// The event name (see [`event_type`]): becomes the CloudEvent `type`.
    pub event_type: String,
    /// What the event is about, e.g. `calling/callConnections/<id>`: the CloudEvent `subject`.
    pub subject: Option<String>,
    /// The CloudEvent `data`.
    pub data: serde_json::Value,
}

impl ApiEvent {
    /// An event of any type, with the given subject and data.
    pub fn new(event_type: &str, subject: Option<String>, data: serde_json::Value) -> ApiEvent {
        ApiEvent {
            event_type: event_type.to_owned(),
            subject,
            data,
        }
    }

    /// A call event: subject `calling/callConnections/<callConnectionId>`, data in the
    /// Call Automation shape.
    pub fn call(event_type: &str, data: CallEventData) -> ApiEvent {
        let subject = format!("calling/callConnections/{}", data.call_connection_id);
        // Serializing a struct of strings and a JSON map cannot fail; Null is never reached.
        let data = serde_json::to_value(&data).unwrap_or_default();
        ApiEvent::new(event_type, Some(subject), data)
    }
}

/// A CloudEvent in the JSON event format (CloudEvents v1.0.2 §3, JSON Event Format §3),
/// with the `sequence` extension (CloudEvents "Sequence" extension: a string, ordered
/// lexically only when the consumer knows it is a number; here the decimal per-application
/// sequence number) and the `application` extension (the application the event belongs to).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CloudEvent {
    /// Always `"1.0"` (§3.1.1).
    pub specversion: String,
    /// Unique for this `source` (§3.1.1): the hub's boot nonce and a hub-wide counter, so
    /// webhook receivers can deduplicate with it (it is also the `webhook-id`).
    pub id: String,
    /// The producer, e.g. `/tandem/<host>` (§3.1.1).
    pub source: String,
    /// The event name, e.g. `CallConnected` (§3.1.1).
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the event is about, e.g. `calling/callConnections/<id>` (§3.1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the hub published it, RFC 3339 UTC (§3.1.2).
    pub time: String,
    /// Always `application/json` (§3.1.2).
    pub datacontenttype: String,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The per-application sequence number, in decimal (Sequence extension).
    pub sequence: String,
    /// The application whose log holds this event (extension attribute).
    pub application: String,
}

impl CloudEvent {
    /// The sequence number, parsed back from the `sequence` attribute (0 if it is not one).
    pub fn sequence_number(&self) -> u64 {
        self.sequence.parse().unwrap_or(0)
    }
}

/// `time` as RFC 3339 in UTC with milliseconds (`2025-01-31T23:59:59.123Z`, RFC 3339 §5.6),
/// computed from the Unix time with the civil-from-days algorithm (proleptic Gregorian).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`
/// restricted to dates on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.789Z");
        // 2024-12-31T23:59:59Z
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339(t), "2024-12-31T23:59:59.000Z");
        // 2100-03-01 (2100 is not a leap year)
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_400);
        assert_eq!(rfc3339(t), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn call_event_shape() {
        let mut extra = serde_json::Map::new();
        extra.insert("sequenceNumber".into(), 3.into());
        let event = ApiEvent::call(
            event_type::PARTICIPANTS_UPDATED,
            CallEventData {
                call_connection_id: "c1".into(),
                correlation_id: "abc@host".into(),
                operation_context: Some("ctx".into()),
                result_information: Some(ResultInformation {
                    code: 200,
                    sub_code: 0,
                    message: "ok".into(),
                }),
                extra,
            },
        );
        assert_eq!(event.subject.as_deref(), Some("calling/callConnections/c1"));
        assert_eq!(event.data["callConnectionId"], "c1");
        assert_eq!(event.data["correlationId"], "abc@host");
        assert_eq!(event.data["operationContext"], "ctx");
        assert_eq!(event.data["resultInformation"]["subCode"], 0);
        assert_eq!(event.data["sequenceNumber"], 3);
    }
}

//! The JSON bodies of the API (Azure Communication Services Call Automation's names,
//! camelCase). Requests refuse unknown fields; every action takes `operationContext`
//! (echoed in the events the action raises) and `operationCallbackUri` (where those
//! events go instead of the application's callback).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Whom to call or transfer to: exactly one of `sipUri` and `phoneNumber`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identifier {
    /// A `sip:` or `sips:` URI whose host is an IP address (`sip:alice@192.0.2.10:5060`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_uri: Option<String>,
    /// An E.164 number (`+4930123456`, digits with an optional leading `+`, at most 20
    /// digits): placed through the configured default trunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

/// The schema says what the checks enforce: one of two shapes.
impl utoipa::PartialSchema for Identifier {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let one = |name: &str, pattern: &str, description: &str| {
            ObjectBuilder::new()
                .property(
                    name,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(pattern))
                        .description(Some(description)),
                )
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(one(
                "sipUri",
                "^sips?:([!-~]+@)?[A-Za-z0-9.:\\[\\]-]+([;?][!-~]*)?$",
                "A sip: or sips: URI whose host is an IP address (sip:alice@192.0.2.10:5060)",
            ))
            .item(one(
                "phoneNumber",
                "^\\+?[0-9]{1,20}$",
                "An E.164 number, placed through the configured default trunk",
            ))
            .description(Some(
                "Whom to call or transfer to: exactly one of `sipUri` and `phoneNumber`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Identifier {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Identifier")
    }
}

/// Whole numbers, also when written `30.0` (JSON Schema's integers include them).
pub(crate) mod whole {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn of<E: Error, T: TryFrom<u64>>(n: &serde_json::Number) -> Result<T, E> {
        n.as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| E::custom(format!("expected a whole number in range, not {n}")))
    }

    pub(crate) fn required<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<T, D::Error> {
        of(&serde_json::Number::deserialize(d)?)
    }

    pub(crate) fn optional<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| of(&n))
            .transpose()
    }
}

/// SIP headers and User-to-User data carried with a call, a transfer or an invitation.
///
/// Limits (400 naming the header when broken): header names must start with `X-` and
/// be tokens (RFC 3261 §25.1); at most `maxCustomHeaders` headers (10 by default), each
/// value at most `maxHeaderValue` bytes (256); `userToUser` at most `maxUuiBytes` bytes
/// (128), sent as the `User-to-User` header (RFC 7433); no CR, LF or NUL anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomContext {
    /// `X-` headers: name → value.
    #[serde(default)]
    pub sip_headers: BTreeMap<String, String>,
    /// The User-to-User header's value (RFC 7433), e.g. `56a3;encoding=hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_to_user: Option<String>,
}

/// `POST /v1/calls`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCallRequest {
    /// The configured application placing the call (its endpoint is the caller, its
    /// callback gets the events).
    #[schema(min_length = 1)]
    pub application: String,
    /// Whom to call. Several targets (at most 8) make a group call: each is called,
    /// and each that answers joins the call's conference room, where Tandem mixes
    /// everyone's audio (and the application's plays); one that fails gets
    /// `AddParticipantFailed`, and `CreateCallFailed` comes only when none answered.
    #[schema(min_items = 1, max_items = 8)]
    pub targets: Vec<Identifier>,
    /// The caller ID: a SIP URI (From and P-Asserted-Identity) or a phone number (the
    /// trunk's own caller ID wins when it has one).
    #[serde(default)]
    pub caller_id: Option<Identifier>,
    /// The caller's display name (at most 128 bytes, no control characters).
    #[serde(default)]
    #[schema(max_length = 128)]
    pub caller_display_name: Option<String>,
    #[serde(default)]
    pub custom_context: Option<CustomContext>,
    /// Give up after this many seconds without an answer (1-600; default: the
    /// engine's establish timeout).
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 1, maximum = 600)]
    pub invitation_timeout_in_seconds: Option<u32>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// A participant of a call connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    /// Stable within the call connection: `GET .../participants/{participantId}`.
    pub participant_id: String,
    pub identifier: Identifier,
    /// `connecting`, `connected`, `transferring`, `parked` or `disconnecting`.
    pub state: String,
    /// Muted in the call's conference room (`participants:mute`): the others do not
    /// hear it, it still hears them.
    pub is_muted: bool,
    /// On hold: the application held it (`participants:hold`), or it holds us.
    pub is_on_hold: bool,
    /// The SIP Call-ID of this participant's dialog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_call_id: Option<String>,
}

/// A call connection: the application's call, with its participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallConnectionProperties {
    pub call_connection_id: String,
    pub application: String,
    /// `connecting`, `connected`, `transferring` or `disconnecting`.
    pub call_connection_state: String,
    /// The SIP Call-ID of the first participant's dialog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `outbound` (created by the API) or `inbound` (answered).
    pub direction: String,
    pub participants: Vec<CallParticipant>,
}

/// `GET /v1/calls`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallConnectionList {
    pub value: Vec<CallConnectionProperties>,
}

/// `GET /v1/calls/{callConnectionId}/participants`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParticipantList {
    pub value: Vec<CallParticipant>,
}

/// `POST /v1/calls:answer`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerCallRequest {
    /// From the `IncomingCall` event.
    #[schema(min_length = 1)]
    pub incoming_call_context: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// Why a call is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CallRejectReason {
    /// 603 Decline.
    None,
    /// 486 Busy Here.
    Busy,
    /// 403 Forbidden.
    Forbidden,
}

/// `POST /v1/calls:reject`: `callRejectReason` or `sipStatus` (not both; neither: 603).
/// No event follows (the incoming call is settled, no call connection exists), so it
/// takes no `operationCallbackUri`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectCallRequest {
    #[schema(min_length = 1)]
    pub incoming_call_context: String,
    #[serde(default)]
    pub call_reject_reason: Option<CallRejectReason>,
    /// Any final status 400-699.
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 400, maximum = 699)]
    pub sip_status: Option<u16>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls:redirect`: a 302 with the target as Contact. No event follows (the
/// incoming call is settled, no call connection exists), so it takes no
/// `operationCallbackUri`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectCallRequest {
    #[schema(min_length = 1)]
    pub incoming_call_context: String,
    pub target: Identifier,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}:hangup`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HangupRequest {
    /// End the call for every participant. `false`: the application leaves; with one
    /// participant that ends the call too; with two (joined) they stay together until
    /// one of them hangs up.
    #[serde(default)]
    pub for_everyone: bool,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}:transferToParticipant`: a blind transfer (REFER,
/// RFC 3515 / RFC 5589 §6) of `transferee` (the only participant by default) to
/// `targetParticipant`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferToParticipantRequest {
    pub target_participant: Identifier,
    /// Which participant is transferred (needed when the call has two).
    #[serde(default)]
    pub transferee: Option<Identifier>,
    /// Carried in the REFER and, as Refer-To URI headers, in the transferee's INVITE.
    #[serde(default)]
    pub custom_context: Option<CustomContext>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to an action whose outcome comes as an event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:add`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddParticipantRequest {
    pub participant_to_add: Identifier,
    /// How long the new participant may ring (1-180 s; default 60).
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 1, maximum = 180)]
    pub invitation_timeout_in_seconds: Option<u32>,
    /// The caller ID the new participant sees (a phone number).
    #[serde(default)]
    pub source_caller_id_number: Option<Identifier>,
    #[serde(default)]
    #[schema(max_length = 128)]
    pub source_display_name: Option<String>,
    #[serde(default)]
    pub custom_context: Option<CustomContext>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to `participants:add`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantResponse {
    pub participant: CallParticipant,
    /// For `participants:cancelAddParticipant`.
    pub invitation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:cancelAddParticipant`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelAddParticipantRequest {
    #[schema(min_length = 1)]
    pub invitation_id: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to `participants:cancelAddParticipant`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantResponse {
    pub invitation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:remove`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveParticipantRequest {
    pub participant_to_remove: Identifier,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}:park`: the participant goes to a park orbit and
/// hears music on hold.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParkRequest {
    /// Which participant (needed when the call has two).
    #[serde(default)]
    pub participant: Option<Identifier>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// Where a call was parked.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParkResponse {
    /// The orbit number (dial it to retrieve the call).
    pub orbit: u16,
    /// `sip:<orbit>@<Tandem's address>`.
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls:retrieve`: calls `target` and, once it answers, joins it to the
/// call parked in `orbit`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrieveRequest {
    /// The orbit number (701-720 by default).
    #[serde(deserialize_with = "whole::required")]
    #[schema(minimum = 1, maximum = 65535)]
    pub orbit: u16,
    pub target: Identifier,
    /// Seconds the target may ring (1-600).
    #[serde(default, deserialize_with = "whole::optional")]
    #[schema(minimum = 1, maximum = 600)]
    pub invitation_timeout_in_seconds: Option<u32>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    /// Where this retrieve's `RetrieveSucceeded` / `RetrieveFailed` go instead of the
    /// application's callback.
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to `calls:retrieve`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrieveResponse {
    /// The call connection the parked call belongs to, when the API parked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}:play`: a WAV file (16-bit PCM; other rates and
/// channel counts are converted) to every participant, or to `playTo`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlayRequest {
    /// A path on the Tandem host; relative to the configured media directory when
    /// there is one (then without `..`).
    #[schema(min_length = 1)]
    pub file: String,
    #[serde(default, rename = "loop")]
    pub looped: bool,
    #[serde(default)]
    pub play_to: Option<Vec<Identifier>>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}:sendDtmf`: RFC 4733 events.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendDtmfRequest {
    /// `0-9`, `*`, `#`, `A-D`; 1-32 tones.
    #[schema(pattern = "^[0-9*#A-Da-d]{1,32}$")]
    pub tones: String,
    /// Which participant (needed when the call has two).
    #[serde(default)]
    pub target_participant: Option<Identifier>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `resultInformation` of every event: one type for the events the API raises and the
/// event model of the hub.
pub use crate::events::ResultInformation;

/// `POST /v1/calls:connect`: the application takes over an existing call of Tandem's
/// and receives its events from now on. Name the call by exactly one of
/// `callConnectionId` (a call connection of any application) and `serverCallId` (the
/// SIP Call-ID of any live call of Tandem's: one a route bridged, one a user endpoint
/// answered...; a bridge is taken over with both its legs).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectRequest {
    /// The configured application that takes the call over.
    #[schema(min_length = 1)]
    pub application: String,
    #[serde(default)]
    #[schema(min_length = 1)]
    pub call_connection_id: Option<String>,
    /// The SIP Call-ID of one of the call's dialogs.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub server_call_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:hold`: the participant leaves the
/// call's room (the others no longer hear it, it no longer hears them) and gets a
/// re-INVITE with `a=sendonly` (RFC 3264 §8.4); `file`, when given, plays to it in a
/// loop while it is held.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldRequest {
    pub target_participant: Identifier,
    /// Music on hold: a WAV file, as `play` takes it.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub file: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:mute` and `participants:unmute`:
/// mutes (or unmutes) participants of a call whose participants talk in Tandem's
/// conference room (a group call, or one that had a participant added). A muted
/// participant still hears the others; they stop hearing it. The mute lasts through a
/// hold until it is undone.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuteParticipantsRequest {
    /// One to 16 participants of the call, each named once.
    #[schema(min_items = 1, max_items = 16)]
    pub target_participants: Vec<Identifier>,
    /// Echoed in the answer and in the `ParticipantsUpdated` the change raises.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    /// Where that `ParticipantsUpdated` goes instead of the application's callback.
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to `participants:mute` and `participants:unmute`: done (a
/// `ParticipantsUpdated` with `isMuted` follows when anything changed).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MuteParticipantsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/calls/{callConnectionId}/participants:unhold`: a re-INVITE with
/// `a=sendrecv`; once answered the participant is back in the call's room.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnholdRequest {
    pub target_participant: Identifier,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

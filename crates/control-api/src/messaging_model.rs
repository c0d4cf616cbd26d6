//! The JSON bodies of the messaging API, in the style of UCWA (the Unified
//! Communications Web API's `communication`, `conversation`, `messaging` and
//! `messagingInvitation` resources), camelCase. Requests refuse unknown fields; every
//! action takes `operationContext` (echoed in the events it raises) and
//! `operationCallbackUri` (where those events go instead of the application's callback).
//!
//! Limits are counted in characters (Unicode scalar values, as JSON Schema's
//! `maxLength`): a message's content at most [`MAX_MESSAGE_CHARS`], a subject at most
//! [`MAX_SUBJECT_CHARS`] without control characters (it becomes the `Subject` header),
//! a thread id at most [`MAX_THREAD_ID_CHARS`] visible ASCII characters (it becomes the
//! `Ms-Conversation-ID` header).

use crate::model::Identifier;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest message content, in characters. A MESSAGE larger than about 1300 bytes
/// is sent over UDP as IP fragments (RFC 3428 §7 asks for a congestion-controlled
/// transport past that size): keep messages short where the path is lossy.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// The longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 256;
/// The longest thread id, in characters.
pub const MAX_THREAD_ID_CHARS: usize = 128;

/// The content types a message may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MessageContentType {
    /// Plain text, sent as `text/plain;charset=UTF-8`.
    #[serde(rename = "text/plain")]
    TextPlain,
    /// HTML, sent as `text/html;charset=UTF-8` (the peer must accept it: its SDP's
    /// `a=accept-types`, else 422).
    #[serde(rename = "text/html")]
    TextHtml,
}

impl MessageContentType {
    /// The Content-Type on the wire.
    pub fn wire(self) -> &'static str {
        match self {
            MessageContentType::TextPlain => "text/plain;charset=UTF-8",
            MessageContentType::TextHtml => "text/html;charset=UTF-8",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageContentType::TextPlain => "text/plain",
            MessageContentType::TextHtml => "text/html",
        }
    }
}

/// How important a conversation is (UCWA's `importance`), sent as SIP `Priority`
/// (RFC 3261 §20.26): `high` as `urgent`, `low` as `non-urgent`; an incoming
/// `emergency` or `urgent` reads as `high`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Importance {
    #[default]
    Normal,
    High,
    Low,
}

/// A message: its content type and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageContent {
    pub content_type: MessageContentType,
    /// 1 to 4096 characters.
    #[schema(min_length = 1, max_length = 4096)]
    pub content: String,
}

/// `POST /v1/conversations:startMessaging`: an IM call (INVITE with an `m=message`
/// SDP) to `to`, with an optional first message carried in the INVITE.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartMessagingRequest {
    /// The configured application starting the conversation (its endpoint is the
    /// caller, its callback gets the events).
    #[schema(min_length = 1)]
    pub application: String,
    /// Whom to message: a SIP URI, or a phone number through the default trunk.
    pub to: Identifier,
    /// The conversation's subject (the `Subject` header): at most 256 characters, no
    /// control characters.
    #[serde(default)]
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001f\\u007f]*$")]
    pub subject: Option<String>,
    #[serde(default)]
    pub importance: Option<Importance>,
    /// The conversation thread (the `Ms-Conversation-ID` header): 1 to 128 visible
    /// ASCII characters.
    #[serde(default)]
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub thread_id: Option<String>,
    /// A first message, sent with the invitation.
    #[serde(default)]
    pub message: Option<MessageContent>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/conversations/{conversationId}/messaging:sendMessage`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    pub content_type: MessageContentType,
    /// 1 to 4096 characters.
    #[schema(min_length = 1, max_length = 4096)]
    pub content: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The answer to `messaging:sendMessage`: `messageCompleted` or `messageFailed` with
/// this id follows.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST /v1/conversations/{conversationId}/messaging:setIsTyping`: our composing
/// state (RFC 3994): `true` sends `active` (refreshed while it lasts), `false` `idle`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetIsTypingRequest {
    pub is_typing: bool,
}

/// `POST /v1/conversations/{conversationId}/messaging:stopMessaging` (the body may be
/// empty).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopMessagingRequest {
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// `POST /v1/conversations:acceptMessaging`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptMessagingRequest {
    /// From the incoming `messagingInvitation` event.
    #[schema(min_length = 1)]
    pub invitation_context: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// Why an invitation is declined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeclineReason {
    /// 603 Decline.
    #[default]
    Declined,
    /// 486 Busy Here.
    Busy,
    /// 403 Forbidden.
    Forbidden,
    /// 480 Temporarily Unavailable.
    Unavailable,
}

impl DeclineReason {
    pub fn status(self) -> u16 {
        match self {
            DeclineReason::Declined => 603,
            DeclineReason::Busy => 486,
            DeclineReason::Forbidden => 403,
            DeclineReason::Unavailable => 480,
        }
    }
}

/// `POST /v1/conversations:declineMessaging`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclineMessagingRequest {
    #[schema(min_length = 1)]
    pub invitation_context: String,
    /// `declined` (603, the default), `busy` (486), `forbidden` (403) or `unavailable`
    /// (480).
    #[serde(default)]
    pub reason: Option<DeclineReason>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub operation_context: Option<String>,
    /// Where the `messagingInvitation` completed event goes instead of the
    /// application's callback.
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^http://[!-\"$-.0->@-~][!-~]*$")]
    pub operation_callback_uri: Option<String>,
}

/// The remote party of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationParticipant {
    pub participant_id: String,
    pub identifier: Identifier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The messaging modality of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagingProperties {
    /// `Connecting`, `Connected` or `Disconnecting`.
    pub state: String,
    /// We said we are typing (`setIsTyping`).
    pub is_typing: bool,
    /// The remote party is typing (its last RFC 3994 indication, until it times out).
    pub remote_is_typing: bool,
}

/// A conversation: one IM call with one remote party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationProperties {
    pub conversation_id: String,
    pub application: String,
    /// `Connecting`, `Connected` or `Disconnecting`.
    pub state: String,
    /// `Outgoing` (started by the API) or `Incoming` (accepted).
    pub direction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub importance: Importance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The SIP Call-ID of the IM call's dialog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The remote party once connected (none while connecting).
    pub participants: Vec<ConversationParticipant>,
    pub messaging: MessagingProperties,
}

/// `GET /v1/conversations`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationList {
    pub value: Vec<ConversationProperties>,
}

//! Sans-IO audio for Tandem's AudioVideoFlow: G.711 (ITU-T G.711), tone generation and
//! Goertzel detection, a WAV player and recorder, the N-party mixer, and the flow's media
//! pipeline over `rtp-session`.
//!
//! Every block works on 8000 Hz mono 16-bit samples ([`SAMPLE_RATE`]) and none touches a
//! socket or the clock: the driver decides when a frame is due.
#![forbid(unsafe_code)]

pub mod conference;
mod error;
pub mod fifo;
pub mod flow;
pub mod g711;
pub mod goertzel;
pub mod level;
pub mod mixer;
pub mod tone;
pub mod wav;

pub use conference::{ANNOUNCER, Conference, ParticipantId};
pub use error::MediaError;
pub use fifo::SampleFifo;
pub use flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity, FlowStats};
pub use g711::{G711, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
pub use goertzel::{Goertzel, level_dbm0, tone_level_dbm0};
pub use level::{DBM0_PEAK, SAMPLE_RATE, amplitude_to_dbm0, dbm0_to_amplitude};
pub use mixer::Mixer;
pub use tone::{ToneGenerator, ToneSpec};
pub use wav::{Player, Recorder, SampleSink, create_recording, load_wav, load_wav_file};

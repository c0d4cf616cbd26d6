//! The seam to webrtc-sdp: it reads one RTP media section at a time.
//!
//! Measured with webrtc-sdp 0.3.17 (tests/webrtc_sdp_probe.rs keeps the measurements):
//! - `m=message ... sip null`, `m=message ... TCP/MSRP *` and `m=image ... udptl t38` are
//!   dropped with a warning (unsupported protocol); the attributes after them then land on
//!   the previous section or the session;
//! - unknown attributes (`a=crypto`, `a=rtcp-xr`, `a=accept-types`, `a=path`, vendor `a=x-`)
//!   are dropped with a warning;
//! - `e=`, `p=`, `u=`, `k=`, `r=`, `z=` lines, a malformed `a=rtpmap`, a missing `t=` or a
//!   missing `c=` make the whole description fail.
//!
//! So each RTP section is given to it alone, under a fixed session header, with only the
//! line types a media section may carry that it accepts (`m=`, `i=`, `c=`, `b=`, `a=`).
//! Whatever it refuses is reported back as an error and the caller reads the section itself.

use webrtc_sdp::attribute_type::SdpAttribute;

use crate::sdp::Line;
use crate::types::Codec;

/// A session header webrtc-sdp accepts (it wants at least 51 bytes, `t=` and a `c=`).
const HEADER: &str = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n";

/// The `a=rtpmap` codecs of one RTP media section (`lines[0]` is its `m=` line), or
/// webrtc-sdp's reason for refusing it.
pub(crate) fn rtpmaps(lines: &[Line]) -> Result<Vec<Codec>, String> {
    let mut text =
        String::with_capacity(HEADER.len() + lines.iter().map(|l| l.text.len() + 2).sum::<usize>());
    text.push_str(HEADER);
    for line in lines {
        if matches!(line.kind, Some(b'm' | b'i' | b'c' | b'b' | b'a')) {
            text.push_str(&line.text);
            text.push_str("\r\n");
        }
    }
    let session = webrtc_sdp::parse_sdp(&text, false).map_err(|e| e.to_string())?;
    let [media] = session.media.as_slice() else {
        let reason = session
            .warnings
            .first()
            .map_or_else(|| "media section dropped".to_owned(), ToString::to_string);
        return Err(reason);
    };
    Ok(media
        .get_attributes()
        .iter()
        .filter_map(|attribute| match attribute {
            SdpAttribute::Rtpmap(map) => Some(Codec {
                channels: map.channels,
                ..Codec::new(map.payload_type, &map.codec_name, map.frequency)
            }),
            _ => None,
        })
        .collect())
}

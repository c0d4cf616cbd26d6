//! Sans-IO audio for Tandem's AudioVideoFlow: G.711 (ITU-T G.711), tone generation and
//! Goertzel detection, a WAV player and recorder, the N-party mixer, and the flow's media
//! pipeline over `rtp-session`.
#![forbid(unsafe_code)]

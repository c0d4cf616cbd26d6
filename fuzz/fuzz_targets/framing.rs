//! StreamFramer fed in chunks chosen by the input; the messages it yields must not depend
//! on how the stream was chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_message::{Frame, Limits, Message, StreamFramer};

fn run(data: &[u8], sizes: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let lim = Limits { max_header_bytes: 4096, max_headers: 64, max_body_bytes: 8192 };
    let mut f = StreamFramer::new(lim);
    let mut msgs = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = if sizes.is_empty() {
            data.len()
        } else {
            usize::from(sizes[i % sizes.len()]).max(1)
        };
        let end = (pos + n).min(data.len());
        f.push(&data[pos..end]);
        pos = end;
        i += 1;
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    if let Ok(msg) = Message::parse(m.clone()) {
                        let _ = msg.validate();
                    }
                    msgs.push(m.to_vec());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return (msgs, true),
            }
        }
    }
    (msgs, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let k = usize::from(n % 8).min(rest.len());
    let (sizes, data) = rest.split_at(k);
    let chunked = run(data, sizes);
    let whole = run(data, &[]);
    assert_eq!(chunked, whole, "framing depends on chunking");
});

//! N-party conference mixing: each participant hears the sum of all the others, not itself.

use crate::fifo::SampleFifo;

/// Frames of audio each participant's FIFO holds (absorbs jitter and clock drift).
const FIFO_FRAMES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// Not yet heard: faded in over its first frame with audio.
    Joining,
    Active,
    /// Left since the last mix: its last frame is faded out, then it is gone.
    Leaving,
}

#[derive(Debug)]
struct Participant {
    id: u32,
    fifo: SampleFifo,
    /// This frame's contribution (after any fade).
    frame: Vec<i16>,
    membership: Membership,
    /// Whether this frame had any sample from the FIFO.
    had_audio: bool,
}

/// Mixes frames of `frame_len` samples for any number of participants.
///
/// Every [`Mixer::mix`] produces one frame per participant: the saturating sum of every
/// other participant's next frame, computed in O(N) (all frames summed once in i32, each
/// participant's own frame subtracted). A participant whose FIFO ran dry contributes
/// silence for the missing samples, so the others never see a gap. Joining fades a
/// participant in over one frame, leaving fades its last frame out, so neither clicks.
#[derive(Debug)]
pub struct Mixer {
    frame_len: usize,
    participants: Vec<Participant>,
    sum: Vec<i32>,
    out: Vec<i16>,
}

impl Mixer {
    /// A mixer of `frame_len`-sample frames (160 for 20 ms at 8000 Hz).
    pub fn new(frame_len: usize) -> Self {
        Mixer {
            frame_len,
            participants: Vec::new(),
            sum: vec![0; frame_len],
            out: vec![0; frame_len],
        }
    }

    /// The frame length given to [`Mixer::new`].
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Adds `id`: it contributes from the next frame, faded in over its first frame with
    /// audio (so a participant that starts talking a few frames late still does not
    /// click in), and gets a frame from the next [`Mixer::mix`] on. Joining again is a no-op; joining while
    /// leaving (before the next mix) cancels the leave.
    pub fn join(&mut self, id: u32) {
        if let Some(participant) = self.participants.iter_mut().find(|p| p.id == id) {
            if participant.membership == Membership::Leaving {
                participant.membership = Membership::Active;
            }
            return;
        }
        self.participants.push(Participant {
            id,
            fifo: SampleFifo::new(self.frame_len * FIFO_FRAMES),
            frame: vec![0; self.frame_len],
            membership: Membership::Joining,
            had_audio: false,
        });
    }

    /// Removes `id`: the next mix fades out its last frame (what it pushed before leaving;
    /// nothing is accepted from it after) so the others hear no gap or click, and gives it
    /// no frame. Unknown ids are ignored.
    pub fn leave(&mut self, id: u32) {
        let Some(index) = self.participants.iter().position(|p| p.id == id) else {
            return;
        };
        let Some(participant) = self.participants.get_mut(index) else {
            return;
        };
        match participant.membership {
            // Never mixed: nothing to fade.
            Membership::Joining => {
                self.participants.remove(index);
            }
            Membership::Active => participant.membership = Membership::Leaving,
            Membership::Leaving => {}
        }
    }

    /// Whether `id` is a participant (one that has left is not).
    pub fn contains(&self, id: u32) -> bool {
        self.participants
            .iter()
            .any(|p| p.id == id && p.membership != Membership::Leaving)
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.participants
            .iter()
            .filter(|p| p.membership != Membership::Leaving)
            .count()
    }

    /// Whether there is no participant.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues what `id` said (its FIFO holds three frames; older samples are dropped on
    /// overflow). Ignored for an id that is not a participant.
    pub fn push(&mut self, id: u32, samples: &[i16]) {
        if let Some(participant) = self
            .participants
            .iter_mut()
            .find(|p| p.id == id && p.membership != Membership::Leaving)
        {
            participant.fifo.push(samples);
        }
    }

    /// Samples dropped so far from `id`'s FIFO because it overflowed.
    pub fn overflowed(&self, id: u32) -> Option<u64> {
        self.participants
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.fifo.overflowed())
    }

    /// Mixes one frame and hands each participant its output frame: the saturating sum of
    /// every other participant's next frame (silence where a FIFO ran dry). Buffers are
    /// reused: no allocation per frame.
    pub fn mix(&mut self, mut each: impl FnMut(u32, &[i16])) {
        let len = self.frame_len;
        // Fade gains step by 1/(len+1): the first faded-in sample and the last faded-out
        // one are both one step from silence.
        let steps = i32::try_from(len).unwrap_or(i32::MAX).saturating_add(1);
        self.sum.fill(0);
        for participant in &mut self.participants {
            let got = participant.fifo.pop_into(&mut participant.frame);
            participant.had_audio = got > 0;
            if let Some(rest) = participant.frame.get_mut(got..) {
                rest.fill(0);
            }
            match participant.membership {
                Membership::Active => {}
                Membership::Joining => {
                    for (sample, step) in participant.frame.iter_mut().zip(1..) {
                        *sample = scale(*sample, step, steps);
                    }
                }
                Membership::Leaving => {
                    for (sample, step) in participant.frame.iter_mut().zip((1..steps).rev()) {
                        *sample = scale(*sample, step, steps);
                    }
                }
            }
            for (total, &sample) in self.sum.iter_mut().zip(&participant.frame) {
                *total = total.saturating_add(i32::from(sample));
            }
        }
        for participant in &mut self.participants {
            if participant.membership == Membership::Leaving {
                continue;
            }
            for ((out, &total), &own) in self.out.iter_mut().zip(&self.sum).zip(&participant.frame)
            {
                *out = total
                    .saturating_sub(i32::from(own))
                    .clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            each(participant.id, &self.out);
            // The fade-in is spent on the first frame that had audio in it.
            if participant.membership == Membership::Joining && participant.had_audio {
                participant.membership = Membership::Active;
            }
        }
        self.participants
            .retain(|p| p.membership != Membership::Leaving);
    }
}

/// `sample × numerator / denominator`, rounded toward zero.
fn scale(sample: i16, numerator: i32, denominator: i32) -> i16 {
    let scaled = i64::from(sample) * i64::from(numerator) / i64::from(denominator.max(1));
    scaled.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

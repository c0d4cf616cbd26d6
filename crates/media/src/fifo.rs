//! A bounded sample FIFO between a producer and a consumer running on different clocks.

use std::collections::VecDeque;

/// A bounded FIFO of samples. When a push would exceed the capacity the oldest samples are
/// dropped (and counted): the two ends' clocks drift, and keeping the newest audio bounds
/// the delay.
#[derive(Debug, Clone)]
pub struct SampleFifo {
    samples: VecDeque<i16>,
    capacity: usize,
    overflowed: u64,
}

impl SampleFifo {
    /// An empty FIFO holding at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        SampleFifo {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            overflowed: 0,
        }
    }

    /// Appends `samples`, dropping the oldest ones beyond the capacity.
    pub fn push(&mut self, samples: &[i16]) {
        // Only the newest `capacity` of the pushed samples can stay.
        let keep_from = samples.len().saturating_sub(self.capacity);
        let newest = samples.get(keep_from..).unwrap_or_default();
        let mut dropped = keep_from;
        let excess = (self.samples.len() + newest.len()).saturating_sub(self.capacity);
        if excess > 0 {
            self.samples.drain(..excess.min(self.samples.len()));
            dropped += excess;
        }
        self.samples.extend(newest.iter().copied());
        self.overflowed = self.overflowed.saturating_add(dropped as u64);
    }

    /// Moves up to `out.len()` samples into `out` and returns how many: the rest of `out`
    /// is untouched.
    pub fn pop_into(&mut self, out: &mut [i16]) -> usize {
        let count = out.len().min(self.samples.len());
        let (front, back) = self.samples.as_slices();
        let from_front = count.min(front.len());
        let from_back = count - from_front;
        if let (Some(to), Some(from)) = (out.get_mut(..from_front), front.get(..from_front)) {
            to.copy_from_slice(from);
        }
        if let (Some(to), Some(from)) = (out.get_mut(from_front..count), back.get(..from_back)) {
            to.copy_from_slice(from);
        }
        self.samples.drain(..count);
        count
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The capacity given to [`SampleFifo::new`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Samples dropped on overflow so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Drops every held sample (not counted as overflow).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

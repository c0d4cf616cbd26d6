//! Conference rooms through the façade: the engine's room commands
//! ([`Engine::join_room`](calls::Engine::join_room) and the rest), run on the driver.
//! Rooms report as [`Event::Room`](calls::Event::Room) on a [`Tandem::tap`]; the
//! members' calls keep their own event streams.

use super::{Error, Tandem};
use calls::{CallHandle, RoomId};

impl Tandem {
    /// A new, empty conference room.
    pub async fn new_room(&self) -> Result<RoomId, Error> {
        self.with_engine(|engine, _| engine.new_room()).await
    }

    /// Puts an established audio call with Tandem's own media in `room`: it hears every
    /// other member, mixed by Tandem, and they hear it. See
    /// [`Engine::join_room`](calls::Engine::join_room) for what is refused.
    pub async fn join_room(&self, call: CallHandle, room: RoomId) -> Result<(), Error> {
        Ok(self
            .with_engine(move |engine, now| engine.join_room(now, call, room))
            .await??)
    }

    /// Takes `call` out of its room (its own flow again); the room it left.
    pub async fn leave_room(&self, call: CallHandle) -> Result<RoomId, Error> {
        Ok(self
            .with_engine(move |engine, now| engine.leave_room(now, call))
            .await??)
    }

    /// Closes `room`: its members leave it (their calls go on); the calls that left.
    pub async fn close_room(&self, room: RoomId) -> Result<Vec<CallHandle>, Error> {
        Ok(self
            .with_engine(move |engine, now| engine.close_room(now, room))
            .await??)
    }

    /// The members of `room`, in the order they joined.
    pub async fn room_members(&self, room: RoomId) -> Result<Vec<CallHandle>, Error> {
        self.with_engine(move |engine, _| engine.room_members(room))
            .await
    }

    /// A room-wide announcement: every member hears the WAV file `file`, or with `None`
    /// the hold tone pattern, over the others; looped or once.
    pub async fn play_to_room(
        &self,
        room: RoomId,
        file: Option<String>,
        looped: bool,
    ) -> Result<(), Error> {
        Ok(self
            .with_engine(move |engine, _| engine.play_to_room(room, file, looped))
            .await??)
    }
}

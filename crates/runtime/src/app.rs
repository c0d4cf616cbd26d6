//! The async façade of the call model: what a Rust application uses.
//!
//! ```text
//! let endpoint = tandem.add_application_endpoint(settings).await?;
//! let conversation = endpoint.new_conversation(ConversationSettings::default()).await?;
//! let (call, mut events) = AudioVideoCall::new(&conversation).await?;   // events exist now
//! let answered = call.establish("sip:echo@127.0.0.1", options).await?;
//! while let Some(event) = events.next().await { ... }
//! ```
//!
//! Every handle is a cheap clone that sends a command to the driver task, which owns
//! the sans-IO [`Engine`]. A call's event stream is created in the same step as the
//! call, so no event can be missed; an incoming call arrives with its stream.

use calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallDeclineOptions, CallError,
    CallEstablishOptions, CallEvent, CallForwardOptions, CallHandle, CallKind,
    CallProvisionalResponseOptions, CallReceived, CallState, CallTerminateOptions,
    ConversationHandle, ConversationSettings, DeliveryResult, EndpointEvent, EndpointHandle,
    Engine, EstablishFailure, EstablishSucceeded, Event, HoldType, InstantMessage, MessageId,
    MessageOptions, Operation, OperationFailure, PageMessage, UserEndpointSettings,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

mod rooms;

/// Work for the driver: runs with the engine and the routes, at `now`.
type Job = Box<dyn FnOnce(&mut AppState, &mut Engine, Instant) + Send>;

/// The driver's end of the application channel.
#[derive(Debug)]
pub struct ApiReceiver {
    rx: mpsc::UnboundedReceiver<Job>,
    tandem: Tandem,
}

impl ApiReceiver {
    pub(crate) async fn recv(&mut self) -> Option<Job> {
        self.rx.recv().await
    }

    pub(crate) fn tandem(&self) -> Tandem {
        self.tandem.clone()
    }
}

/// A handle and its driver end: give the receiver to
/// [`run_with_api`](crate::run_with_api), keep the handle.
pub fn channel() -> (Tandem, ApiReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tandem = Tandem { tx };
    (tandem.clone(), ApiReceiver { rx, tandem })
}

/// Why an application request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused the command (state, arguments, headers...).
    #[error(transparent)]
    Call(#[from] CallError),
    /// `establish` ended without an answer: see
    /// [`EstablishFailure::is_refusal`] for refusal versus network or media failure.
    #[error("establish failed: {0:?}")]
    Establish(EstablishFailure),
    /// A hold, retrieve or re-offer did not complete.
    #[error("{operation} failed: {failure:?}")]
    Operation {
        operation: Operation,
        failure: OperationFailure,
    },
    /// The driver has stopped.
    #[error("the Tandem runtime has stopped")]
    Stopped,
    /// The call has no media flow: an IM call, or the call has ended.
    #[error("the call has no media flow")]
    NoFlow,
    /// The call's media has not started (DTMF, statistics and the end of a recording
    /// need it running: after `FlowStateChanged`).
    #[error("the call's media has not started")]
    MediaNotStarted,
    /// The media layer refused: a WAV it cannot read, DTMF without telephone-event...
    #[error(transparent)]
    Media(#[from] media::MediaError),
}

/// A handle on a running Tandem driver.
#[derive(Debug, Clone)]
pub struct Tandem {
    tx: mpsc::UnboundedSender<Job>,
}

impl Tandem {
    /// Runs `f` in the driver and returns its answer.
    async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AppState, &mut Engine, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |state, engine, now| {
            let _ = reply.send(f(state, engine, now));
        });
        self.tx.send(job).map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Every event the engine raises from now on (calls, bridges, endpoints, media),
    /// in order, as well as to their own streams: for an application that follows
    /// everything, such as the control API. Unbounded: read it.
    pub async fn tap(&self) -> Result<mpsc::UnboundedReceiver<Event>, Error> {
        self.ask(|state, _, _| {
            let (tx, rx) = mpsc::unbounded_channel();
            state.taps.push(tx);
            rx
        })
        .await
    }

    /// Runs `f` on the driver task with the engine and the current time: the whole
    /// engine API (bridges, transfers, park...) for applications the façade does not
    /// cover yet. Keep `f` short; it holds up the driver.
    pub async fn with_engine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.ask(move |_, engine, now| f(engine, now)).await
    }

    /// The façade's handle on an existing call of the engine (say, one a tap reported),
    /// for its media ([`AudioVideoCall::flow`]) and commands.
    pub fn call(&self, handle: CallHandle, kind: CallKind) -> Call {
        Call {
            tandem: self.clone(),
            handle,
            kind,
        }
    }

    /// An application endpoint: calls and messages to its URI's user come to it.
    pub async fn add_application_endpoint(
        &self,
        settings: ApplicationEndpointSettings,
    ) -> Result<ApplicationEndpoint, Error> {
        let tandem = self.clone();
        let (handle, events) = self
            .ask(move |state, engine, _| {
                let handle = engine.add_application_endpoint(settings)?;
                Ok::<_, CallError>((handle, state.endpoint_stream(handle)))
            })
            .await??;
        Ok(ApplicationEndpoint {
            tandem,
            handle,
            events,
        })
    }

    /// A user endpoint: registers its URI with a registrar, then as an application
    /// endpoint.
    pub async fn add_user_endpoint(
        &self,
        settings: UserEndpointSettings,
    ) -> Result<ApplicationEndpoint, Error> {
        let tandem = self.clone();
        let (handle, events) = self
            .ask(move |state, engine, now| {
                let handle = engine.add_user_endpoint(now, settings)?;
                Ok::<_, CallError>((handle, state.endpoint_stream(handle)))
            })
            .await??;
        Ok(ApplicationEndpoint {
            tandem,
            handle,
            events,
        })
    }
}

/// What happens on an endpoint, for the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum EndpointNotice {
    /// An incoming call, with its handle and its event stream.
    CallReceived(IncomingCall),
    /// A page-mode message (already answered 200).
    MessageReceived(Box<PageMessage>),
    /// A user endpoint's registration changed.
    Registration(calls::sip_core::TrunkEvent),
}

/// An incoming call: what its INVITE carried, the call and its events.
#[derive(Debug)]
pub struct IncomingCall {
    pub info: Box<CallReceived>,
    pub call: Call,
    pub events: CallEvents,
}

/// An endpoint of the application.
#[derive(Debug)]
pub struct ApplicationEndpoint {
    tandem: Tandem,
    handle: EndpointHandle,
    events: mpsc::UnboundedReceiver<EndpointNotice>,
}

impl ApplicationEndpoint {
    pub fn handle(&self) -> EndpointHandle {
        self.handle
    }

    /// The next thing that happened on the endpoint; `None` when the driver stopped.
    pub async fn next_event(&mut self) -> Option<EndpointNotice> {
        self.events.recv().await
    }

    /// A new conversation of this endpoint.
    pub async fn new_conversation(
        &self,
        settings: ConversationSettings,
    ) -> Result<Conversation, Error> {
        let endpoint = self.handle;
        let handle = self
            .tandem
            .ask(move |_, engine, _| engine.new_conversation(endpoint, settings))
            .await??;
        Ok(Conversation {
            tandem: self.tandem.clone(),
            handle,
        })
    }

    /// Sends a page-mode MESSAGE (RFC 3428) and waits for its delivery result.
    pub async fn send_message(
        &self,
        target: &str,
        message: InstantMessage,
        options: MessageOptions,
    ) -> Result<DeliveryResult, Error> {
        let endpoint = self.handle;
        let target = target.to_owned();
        let waiter = self
            .tandem
            .ask(move |state, engine, now| {
                let id = engine.send_page_message(now, endpoint, &target, message, options)?;
                Ok::<_, CallError>(state.delivery_waiter(id))
            })
            .await??;
        waiter.await.map_err(|_| Error::Stopped)
    }
}

/// A conversation: the calls with one party on one subject.
#[derive(Debug, Clone)]
pub struct Conversation {
    tandem: Tandem,
    handle: ConversationHandle,
}

impl Conversation {
    pub fn handle(&self) -> ConversationHandle {
        self.handle
    }

    async fn new_call(&self, kind: CallKind) -> Result<(Call, CallEvents), Error> {
        let conversation = self.handle;
        let tandem = self.tandem.clone();
        let (handle, events) = self
            .tandem
            .ask(move |state, engine, _| {
                let handle = engine.new_call(conversation, kind)?;
                Ok::<_, CallError>((handle, state.call_stream(handle)))
            })
            .await??;
        Ok((
            Call {
                tandem,
                handle,
                kind,
            },
            events,
        ))
    }
}

/// The events of one call, from its creation to `Terminated`.
#[derive(Debug)]
pub struct CallEvents {
    rx: mpsc::UnboundedReceiver<CallEvent>,
}

impl CallEvents {
    /// The next event; `None` after the call's last one (it is `Terminated`) or when
    /// the driver stopped.
    pub async fn next(&mut self) -> Option<CallEvent> {
        self.rx.recv().await
    }
}

/// A call of either kind: the operations every call has.
#[derive(Debug, Clone)]
pub struct Call {
    tandem: Tandem,
    handle: CallHandle,
    kind: CallKind,
}

impl Call {
    pub fn handle(&self) -> CallHandle {
        self.handle
    }

    pub fn kind(&self) -> CallKind {
        self.kind
    }

    /// The call's state now; `Terminated` once it is gone.
    pub async fn state(&self) -> Result<CallState, Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, _| engine.call_state(call).unwrap_or(CallState::Terminated))
            .await
    }

    /// The SIP Call-ID of the call's dialog.
    pub async fn sip_call_id(&self) -> Result<Option<String>, Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, _| engine.sip_call_id(call))
            .await
    }

    /// Places the call and waits for the answer (UCMA's `EstablishAsync`). The events
    /// (provisional responses, state changes) arrive on the call's stream meanwhile.
    pub async fn establish(
        &self,
        target: &str,
        options: CallEstablishOptions,
    ) -> Result<EstablishSucceeded, Error> {
        let call = self.handle;
        let target = target.to_owned();
        let waiter = self
            .tandem
            .ask(move |state, engine, now| {
                let waiter = state.establish_waiter(call);
                match engine.establish(now, call, &target, options) {
                    Ok(()) => Ok(waiter),
                    Err(error) => {
                        state.establish_waiters.remove(&call);
                        Err(error)
                    }
                }
            })
            .await??;
        match waiter.await {
            Ok(Ok(success)) => Ok(success),
            Ok(Err(failure)) => Err(Error::Establish(failure)),
            Err(_) => Err(Error::Stopped),
        }
    }

    /// Accepts an incoming call (200 with our answer).
    pub async fn accept(&self, options: CallAcceptOptions) -> Result<(), Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, now| engine.accept(now, call, options))
            .await??;
        Ok(())
    }

    /// Declines an incoming call with a 4xx–6xx.
    pub async fn decline(&self, options: CallDeclineOptions) -> Result<(), Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, now| engine.decline(now, call, options))
            .await??;
        Ok(())
    }

    /// Redirects an incoming call (3xx) to `target`.
    pub async fn forward(&self, target: &str, options: CallForwardOptions) -> Result<(), Error> {
        let call = self.handle;
        let target = target.to_owned();
        self.tandem
            .ask(move |_, engine, now| engine.forward(now, call, &target, options))
            .await??;
        Ok(())
    }

    /// Sends a provisional response (180 by default) to an incoming call.
    pub async fn send_provisional(
        &self,
        options: CallProvisionalResponseOptions,
    ) -> Result<(), Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, now| engine.send_provisional(now, call, options))
            .await??;
        Ok(())
    }

    /// Ends the call (BYE, CANCEL or 480 as its state requires).
    pub async fn terminate(&self, options: CallTerminateOptions) -> Result<(), Error> {
        let call = self.handle;
        self.tandem
            .ask(move |_, engine, now| engine.terminate(now, call, options))
            .await??;
        Ok(())
    }

    async fn operation(
        &self,
        operation: Operation,
        f: impl FnOnce(&mut Engine, Instant) -> Result<(), CallError> + Send + 'static,
    ) -> Result<(), Error> {
        let call = self.handle;
        let waiter = self
            .tandem
            .ask(move |state, engine, now| {
                let waiter = state.operation_waiter(call, operation);
                match f(engine, now) {
                    Ok(()) => Ok(waiter),
                    Err(error) => {
                        state.operation_waiters.remove(&(call, operation));
                        Err(error)
                    }
                }
            })
            .await??;
        match waiter.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(Error::Operation { operation, failure }),
            Err(_) => Err(Error::Stopped),
        }
    }
}

/// An audio/video call (UCMA's `AudioVideoCall`).
#[derive(Debug, Clone)]
pub struct AudioVideoCall(Call);

impl AudioVideoCall {
    /// A new call in `conversation`, with its event stream.
    pub async fn new(conversation: &Conversation) -> Result<(AudioVideoCall, CallEvents), Error> {
        let (call, events) = conversation.new_call(CallKind::AudioVideo).await?;
        Ok((AudioVideoCall(call), events))
    }

    /// The incoming call as an audio/video call, if it is one.
    pub fn from_incoming(call: Call) -> Option<AudioVideoCall> {
        (call.kind == CallKind::AudioVideo).then_some(AudioVideoCall(call))
    }

    /// Holds the call (re-INVITE with sendonly or inactive) and waits for the answer.
    pub async fn hold(&self, hold: HoldType) -> Result<(), Error> {
        let call = self.0.handle;
        self.0
            .operation(Operation::Hold, move |engine, now| {
                engine.hold(now, call, hold)
            })
            .await
    }

    /// Takes the call off hold and waits for the answer.
    pub async fn retrieve(&self) -> Result<(), Error> {
        let call = self.0.handle;
        self.0
            .operation(Operation::Retrieve, move |engine, now| {
                engine.retrieve(now, call)
            })
            .await
    }
}

impl AudioVideoCall {
    /// The call's media (UCMA's `AudioVideoFlow`). Commands given before media starts
    /// (at `FlowConfigurationRequested`, say) run as soon as it does.
    pub fn flow(&self) -> AudioVideoFlow {
        AudioVideoFlow {
            tandem: self.0.tandem.clone(),
            call: self.0.handle,
        }
    }
}

/// The media of an audio/video call: a player, tones, a recorder, DTMF and echo over
/// its G.711 RTP stream. Results arrive as call events (`PlayCompleted`, `DtmfSent`,
/// `ToneReceived`...).
#[derive(Debug, Clone)]
pub struct AudioVideoFlow {
    tandem: Tandem,
    call: CallHandle,
}

impl AudioVideoFlow {
    /// Gives `f` to the flow: at once if it runs, else when it starts (`queue`); with
    /// `wait`, returns `f`'s answer (only for a running flow).
    async fn on_flow<T: Send + 'static>(
        &self,
        wait: bool,
        f: impl FnOnce(&mut media::AudioFlow, Instant) -> T + Send + 'static,
    ) -> Result<Option<T>, Error> {
        let call = self.call;
        let (reply, answer) = oneshot::channel();
        self.tandem
            .ask(move |state, engine, _| {
                let alive = engine
                    .call_state(call)
                    .is_some_and(|s| s != CallState::Terminated);
                state.media.command(
                    call,
                    alive,
                    !wait,
                    Box::new(move |flow, now| {
                        let _ = reply.send(f(flow, now));
                    }),
                )
            })
            .await?
            .map_err(|e| match e {
                crate::media_plane::FlowError::NotStarted => Error::MediaNotStarted,
                _ => Error::NoFlow,
            })?;
        if !wait {
            return Ok(None);
        }
        answer.await.map(Some).map_err(|_| Error::NoFlow)
    }

    /// Asks a running flow.
    async fn ask_flow<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut media::AudioFlow, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.on_flow(true, f).await?.ok_or(Error::NoFlow)
    }

    /// Tells the flow, now or when it starts.
    async fn tell_flow(
        &self,
        f: impl FnOnce(&mut media::AudioFlow, Instant) + Send + 'static,
    ) -> Result<(), Error> {
        self.on_flow(false, f).await.map(|_| ())
    }

    /// Plays a WAV file (8 kHz mono 16-bit; other rates and channel counts are
    /// converted), once or in a loop, instead of what was playing.
    pub async fn play_file(&self, path: impl AsRef<Path>, looping: bool) -> Result<(), Error> {
        let path = path.as_ref().to_owned();
        let samples = tokio::task::spawn_blocking(move || media::load_wav_file(&path))
            .await
            .map_err(|_| Error::Stopped)??;
        self.play(samples.into(), looping).await
    }

    /// Plays samples (8 kHz mono), shared without copies between flows.
    pub async fn play(&self, samples: Arc<[i16]>, looping: bool) -> Result<(), Error> {
        self.tell_flow(move |flow, _| flow.play(media::Player::new(samples, looping)))
            .await
    }

    /// Plays a tone: `ToneSpec::dial()`, `ringback()`, `busy()`, or any frequencies.
    pub async fn play_tone(&self, spec: media::ToneSpec) -> Result<(), Error> {
        self.tell_flow(move |flow, _| flow.play_tone(spec)).await
    }

    /// Stops the player or tone.
    pub async fn stop_playing(&self) -> Result<(), Error> {
        self.tell_flow(|flow, _| flow.stop_playing()).await
    }

    /// What comes in goes back out (while nothing plays).
    pub async fn set_echo(&self, on: bool) -> Result<(), Error> {
        self.tell_flow(move |flow, _| flow.set_echo(on)).await
    }

    /// Records what the peer says to a WAV file (8 kHz mono 16-bit), from now or from
    /// when media starts. A recording in progress is finished first (its failure is
    /// raised as `RecordingFailed`).
    pub async fn record_to(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let recorder = media::create_recording(path.as_ref())?;
        self.tell_flow(move |flow, _| {
            if let Err(error) = flow.record(Box::new(recorder)) {
                tracing::warn!(%error, "the previous recording could not be finished");
            }
        })
        .await
    }

    /// Finishes the recording; the number of samples written.
    pub async fn stop_recording(&self) -> Result<u64, Error> {
        Ok(self.ask_flow(|flow, _| flow.stop_recording()).await??)
    }

    /// Sends DTMF digits (`0-9`, `*`, `#`, `A-D`) as RFC 4733 events on the negotiated
    /// payload type, 100 ms each with 60 ms between them; `DtmfSent` when done.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), Error> {
        let digits = digits.to_owned();
        self.ask_flow(move |flow, _| {
            flow.send_dtmf(
                &digits,
                std::time::Duration::from_millis(100),
                std::time::Duration::from_millis(60),
            )
        })
        .await??;
        Ok(())
    }

    /// Packets, loss, jitter, how the peer sees our stream.
    pub async fn stats(&self) -> Result<media::FlowStats, Error> {
        self.ask_flow(|flow, _| flow.stats()).await
    }
}

impl std::ops::Deref for AudioVideoCall {
    type Target = Call;

    fn deref(&self) -> &Call {
        &self.0
    }
}

/// An instant messaging call (UCMA's `InstantMessagingCall`).
#[derive(Debug, Clone)]
pub struct InstantMessagingCall(Call);

impl InstantMessagingCall {
    /// A new call in `conversation`, with its event stream.
    pub async fn new(
        conversation: &Conversation,
    ) -> Result<(InstantMessagingCall, CallEvents), Error> {
        let (call, events) = conversation.new_call(CallKind::InstantMessaging).await?;
        Ok((InstantMessagingCall(call), events))
    }

    /// The incoming call as an IM call, if it is one.
    pub fn from_incoming(call: Call) -> Option<InstantMessagingCall> {
        (call.kind == CallKind::InstantMessaging).then_some(InstantMessagingCall(call))
    }

    /// Sends a message in the call and waits for its delivery result.
    pub async fn send_instant_message(
        &self,
        message: InstantMessage,
        options: MessageOptions,
    ) -> Result<DeliveryResult, Error> {
        let call = self.0.handle;
        let waiter = self
            .0
            .tandem
            .ask(move |state, engine, now| {
                let id = engine.send_instant_message(now, call, message, options)?;
                Ok::<_, CallError>(state.delivery_waiter(id))
            })
            .await??;
        waiter.await.map_err(|_| Error::Stopped)
    }

    /// Our composing state (RFC 3994).
    pub async fn set_composing(&self, composing: bool) -> Result<(), Error> {
        let call = self.0.handle;
        self.0
            .tandem
            .ask(move |_, engine, now| engine.set_composing(now, call, composing))
            .await??;
        Ok(())
    }
}

impl std::ops::Deref for InstantMessagingCall {
    type Target = Call;

    fn deref(&self) -> &Call {
        &self.0
    }
}

/// The driver's side: where each call's and endpoint's events go, and who waits for
/// which result.
#[derive(Debug)]
pub(crate) struct AppState {
    tandem: Tandem,
    pub(crate) media: crate::media_plane::MediaPlane,
    calls: HashMap<CallHandle, (mpsc::UnboundedSender<CallEvent>, CallKind)>,
    endpoints: HashMap<EndpointHandle, mpsc::UnboundedSender<EndpointNotice>>,
    establish_waiters:
        HashMap<CallHandle, oneshot::Sender<Result<EstablishSucceeded, EstablishFailure>>>,
    operation_waiters:
        HashMap<(CallHandle, Operation), oneshot::Sender<Result<(), OperationFailure>>>,
    delivery_waiters: HashMap<MessageId, oneshot::Sender<DeliveryResult>>,
    /// Every engine event, copied to each tap ([`Tandem::tap`]).
    taps: Vec<mpsc::UnboundedSender<Event>>,
}

impl AppState {
    pub(crate) fn new(tandem: Tandem, media: crate::media_plane::MediaPlane) -> AppState {
        AppState {
            tandem,
            media,
            calls: HashMap::new(),
            endpoints: HashMap::new(),
            establish_waiters: HashMap::new(),
            operation_waiters: HashMap::new(),
            delivery_waiters: HashMap::new(),
            taps: Vec::new(),
        }
    }

    fn endpoint_stream(
        &mut self,
        endpoint: EndpointHandle,
    ) -> mpsc::UnboundedReceiver<EndpointNotice> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.endpoints.insert(endpoint, tx);
        rx
    }

    fn call_stream(&mut self, call: CallHandle) -> CallEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        self.calls.insert(call, (tx, CallKind::AudioVideo));
        CallEvents { rx }
    }

    fn establish_waiter(
        &mut self,
        call: CallHandle,
    ) -> oneshot::Receiver<Result<EstablishSucceeded, EstablishFailure>> {
        let (tx, rx) = oneshot::channel();
        self.establish_waiters.insert(call, tx);
        rx
    }

    fn operation_waiter(
        &mut self,
        call: CallHandle,
        operation: Operation,
    ) -> oneshot::Receiver<Result<(), OperationFailure>> {
        let (tx, rx) = oneshot::channel();
        self.operation_waiters.insert((call, operation), tx);
        rx
    }

    fn delivery_waiter(&mut self, id: MessageId) -> oneshot::Receiver<DeliveryResult> {
        let (tx, rx) = oneshot::channel();
        self.delivery_waiters.insert(id, tx);
        rx
    }

    /// An engine event to its application.
    pub(crate) fn route(&mut self, event: Event) {
        if !self.taps.is_empty() {
            self.taps.retain(|tap| tap.send(event.clone()).is_ok());
        }
        match event {
            Event::Call { call, event } => self.route_call(call, event),
            Event::Endpoint { endpoint, event } => self.route_endpoint(endpoint, event),
            Event::Core(_) => {}
            _ => {}
        }
    }

    fn route_call(&mut self, call: CallHandle, event: CallEvent) {
        match &event {
            CallEvent::EstablishCompleted { result } => {
                if let Some(waiter) = self.establish_waiters.remove(&call) {
                    let _ = waiter.send(result.clone());
                }
            }
            CallEvent::OperationCompleted { operation, result } => {
                if let Some(waiter) = self.operation_waiters.remove(&(call, *operation)) {
                    let _ = waiter.send(result.clone());
                }
            }
            CallEvent::MessageDelivered { id, result } => {
                if let Some(waiter) = self.delivery_waiters.remove(id) {
                    let _ = waiter.send(result.clone());
                }
            }
            _ => {}
        }
        let last = matches!(
            event,
            CallEvent::StateChanged {
                state: CallState::Terminated,
                ..
            }
        );
        if let Some((tx, _)) = self.calls.get(&call) {
            let _ = tx.send(event);
        }
        // `Terminated` is a call's last event: the stream ends with it.
        if last {
            self.media.forget(call);
            self.calls.remove(&call);
            self.establish_waiters.remove(&call);
            self.operation_waiters.retain(|(c, _), _| *c != call);
        }
    }

    fn route_endpoint(&mut self, endpoint: EndpointHandle, event: EndpointEvent) {
        let notice = match event {
            EndpointEvent::CallReceived(info) => {
                let call = info.call;
                let kind = info.kind;
                let events = self.call_stream(call);
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.1 = kind;
                }
                EndpointNotice::CallReceived(IncomingCall {
                    info,
                    call: Call {
                        tandem: self.tandem.clone(),
                        handle: call,
                        kind,
                    },
                    events,
                })
            }
            EndpointEvent::MessageReceived(message) => EndpointNotice::MessageReceived(message),
            EndpointEvent::MessageDelivered { id, result } => {
                if let Some(waiter) = self.delivery_waiters.remove(&id) {
                    let _ = waiter.send(result);
                }
                return;
            }
            EndpointEvent::Registration(event) => EndpointNotice::Registration(event),
            _ => return,
        };
        if let Some(tx) = self.endpoints.get(&endpoint) {
            let _ = tx.send(notice);
        }
    }
}

//! SIPp conformance of the B2BUA through the real daemon, with three parties on three
//! loopback addresses so that topology hiding can be checked: Tandem on 127.0.0.10, the
//! caller A (a SIPp UAC) on 127.0.0.11, the callees B (bob) on 127.0.0.12 and C (carol) on
//! 127.0.0.13 (SIPp UASes). Each test starts its own daemon with `[[route]]` rules that
//! bridge the caller's call (RFC 7092 §3.1: a B2BUA is two UAs), starts the callee(s),
//! then runs the caller; every SIPp must exit 0: the scenarios (`tests/sipp/b2bua/`, each
//! one's comment says what it checks) fail on any unexpected message and on their
//! `check_it` regexps. On top of that, the SIPp message traces are read back here to check
//! what regexps cannot say well: no header of any message a party got names another
//! party's address or A's Call-ID and tag; in signalling-only mode the SDP is relayed
//! byte for byte; ringing times. Each test ends with the daemon holding no call and no
//! dialog.
//!
//! The transfer flows (RFC 3515 REFER from bob on a bridged call, blind) route the
//! Refer-To target `sip:carol@127.0.0.10:PORT` back into Tandem, where a second rule
//! bridges it to carol with `pass_headers` for Referred-By, User-to-User and the
//! Refer-To URI header X-Case: so the new call is itself a bridge, and what carol sees
//! went through two legs of Tandem's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Daemon;
use common::parties::in_order;
use common::parties::{
    ALICE, BOB, CAROL, Finished, Party, SipMessage, TANDEM, assert_all_ended, assert_succeeded,
    free_port_on, leaks, tandem_address,
};

/// The daemon on 127.0.0.10 (SIP and media) with `routes` (`[[route]]` tables).
fn tandem(name: &str, routes: &str) -> Daemon {
    Daemon::start_on(
        name,
        TANDEM,
        "",
        &format!("[media]\naddress = \"{TANDEM}\"\ntimeout_s = 0\n\n{routes}"),
    )
}

/// A bridge route for the Request-URI user `user`: `keys` are its own extra keys
/// (`ring`, `media`), `conditions` extra `[route.match]` keys, `targets` whole
/// `[[route.targets]]` bodies.
fn bridge_route(user: &str, keys: &str, conditions: &str, targets: &[String]) -> String {
    let mut route = format!(
        "[[route]]\nname = \"{user}\"\naction = \"bridge\"\n{keys}\n\
         [route.match]\nuser = '^{user}$'\n{conditions}\n"
    );
    for target in targets {
        route.push_str(&format!("[[route.targets]]\n{target}\n"));
    }
    route
}

fn target(user: &str, ip: &str, port: u16) -> String {
    format!("uri = \"sip:{user}@{ip}:{port}\"")
}

/// Topology hiding (RFC 7092 §3.1, RFC 5853 §3.1): no header of any message the caller
/// got names a callee's address, and no header of any message a callee got names the
/// caller's address or carries A's Call-ID or From tag (both say `secret`); the legs have
/// different Call-IDs. `bodies_too` (media anchored): the SDP hides them as well.
#[track_caller]
fn assert_hidden(alice: &Finished, callees: &[&Finished], bodies_too: bool) {
    let leaked = leaks(alice, &[BOB, CAROL], bodies_too, &[]);
    assert!(leaked.is_empty(), "alice saw a callee: {leaked:#?}");
    for callee in callees {
        let leaked = leaks(callee, &[ALICE, "secret"], bodies_too, &[]);
        assert!(leaked.is_empty(), "{} saw alice: {leaked:#?}", callee.role);
        for id in callee.call_ids() {
            assert!(
                !alice.call_ids().contains(&id),
                "{} and alice share the Call-ID {id}",
                callee.role
            );
        }
    }
}

/// Signalling-only (RFC 7092 §3.1.1): the body of `what` as `from` sent it is the body
/// `to` got, byte for byte.
#[track_caller]
fn assert_relayed_as_is(
    what: &str,
    from: &Finished,
    sent: impl Fn(&SipMessage) -> bool,
    to: &Finished,
    got: impl Fn(&SipMessage) -> bool,
) {
    let original = from.find(what, |m| m.sent && sent(m));
    let relayed = to.find(what, |m| !m.sent && got(m));
    assert!(
        !original.body.is_empty(),
        "{what}: {} sent no SDP",
        from.role
    );
    assert_eq!(
        String::from_utf8_lossy(&relayed.body),
        String::from_utf8_lossy(&original.body),
        "{what}: the SDP {} got is not the one {} sent",
        to.role,
        from.role
    );
}

/// Flow 1, bob hangs up: A → Tandem → B, signalling-only. B's INVITE carries A's SDP as
/// it is and nothing of A's headers but X-Pass, which the route passes (`pass_headers`);
/// A's 200 carries B's SDP as it is and nothing of B's headers but its X-Pass; B's BYE
/// ends A's leg.
#[test]
fn bridged_signalling_only_callee_hangs_up() {
    let test = "b2b-signalling-bye-b";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route(
            "bob",
            "pass_headers = [\"X-Pass\"]",
            "headers = { \"X-Pass\" = '^x$' }",
            &[format!(
                "{}\nheaders = {{ \"X-Routed-By\" = \"tandem\" }}",
                target("bob", BOB, bob_port)
            )],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_answers_hangs_up.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_bob_hangs_up.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &bob,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &bob,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    // The route matched on A's X-Pass header, and leg B got the target's own header,
    // and X-Pass passed both ways.
    let invite = bob.find("INVITE", |m| m.is_request("INVITE"));
    assert_eq!(invite.header("X-Routed-By"), Some("tandem"));
    assert_eq!(invite.header("X-Pass"), Some("x"));
    let ok = alice.find("200", |m| !m.sent && m.is_response(200, "INVITE"));
    assert_eq!(ok.header("X-Pass"), Some("from-bob"));
    // Bob's BYE reached alice as Tandem's.
    alice.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 1, alice hangs up: A's BYE ends B's leg.
#[test]
fn bridged_signalling_only_caller_hangs_up() {
    let test = "b2b-signalling-bye-a";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_answers.xml",
        &["-key", "callee", "bob", "-key", "sess", "2222"],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_hangs_up.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &bob,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &bob,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    bob.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 2: media anchored (RFC 7092 §3.1.3). Each leg's SDP is Tandem's (its media
/// address 127.0.0.10); neither side sees the other's address, even in the body.
#[test]
fn bridged_media_anchored() {
    let test = "b2b-anchored";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route(
            "bob",
            "media = \"anchored\"",
            "",
            &[target("bob", BOB, bob_port)],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_anchored.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_anchored.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], true);
    // Each leg got an SDP of Tandem's own, with a port of its relay.
    let to_bob = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let to_alice = alice.find("200", |m| !m.sent && m.is_response(200, "INVITE"));
    for sdp in [&to_bob.body, &to_alice.body] {
        let sdp = String::from_utf8_lossy(sdp);
        assert!(sdp.contains(&format!("c=IN IP4 {TANDEM}")), "{sdp}");
        assert!(!sdp.contains("m=audio 0 "), "an audio stream: {sdp}");
    }
    assert_all_ended(&daemon);
}

/// Flow 3: B declines 486; A gets 486 with a Reason naming it (RFC 3326).
#[test]
fn callee_busy_is_relayed_with_reason() {
    let test = "b2b-busy";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(test, "bob", (BOB, bob_port), "b2bua/callee_busy.xml", &[]);
    let alice = Party::caller(test, &daemon, "b2bua/caller_declined.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let busy = alice.find("486", |m| !m.sent && m.is_response(486, "INVITE"));
    assert!(
        busy.header("Reason")
            .is_some_and(|r| r.contains("cause=486")),
        "{:?}",
        busy.headers
    );
    assert_all_ended(&daemon);
}

/// Flow 4: A cancels while B rings: B gets a CANCEL (and answers 487), A gets 487.
#[test]
fn caller_cancel_reaches_the_ringing_callee() {
    let test = "b2b-cancel";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_rings_cancelled.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_cancels.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let cancelled = alice.find("CANCEL", |m| m.sent && m.is_request("CANCEL"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    assert!(in_order(cancelled, cancel), "B's CANCEL came after A's");
    alice.find("487", |m| !m.sent && m.is_response(487, "INVITE"));
    assert_all_ended(&daemon);
}

/// Flow 5: B's re-INVITE (hold: a=sendonly, o= version + 1) reaches A with its SDP as it
/// is; A's answer (a=recvonly) reaches B as it is; then B's BYE ends both.
#[test]
fn callee_reinvite_reaches_the_caller() {
    let test = "b2b-reinvite";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(
        test,
        &bridge_route("bob", "", "", &[target("bob", BOB, bob_port)]),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_reinvites.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_reinvited.xml", "bob");
    let bob = bob.finish();
    assert_succeeded(&[&alice, &bob], &daemon);
    assert_hidden(&alice, &[&bob], false);
    let hold = |m: &SipMessage| {
        m.is_request("INVITE") && String::from_utf8_lossy(&m.body).contains("a=sendonly")
    };
    assert_relayed_as_is("re-INVITE", &bob, hold, &alice, hold);
    let held = |m: &SipMessage| {
        m.is_response(200, "INVITE") && String::from_utf8_lossy(&m.body).contains("a=recvonly")
    };
    assert_relayed_as_is("200 for the re-INVITE", &alice, held, &bob, held);
    assert_all_ended(&daemon);
}

/// Flow 6: parallel ringing. Bob and carol ring at once; carol answers (after ringing
/// half a second); bob gets a CANCEL saying "Call completed elsewhere" (RFC 3326); A gets
/// carol's SDP; A's BYE reaches carol.
#[test]
fn parallel_ring_first_answer_wins() {
    let test = "b2b-parallel";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &bridge_route(
            "both",
            "ring = \"parallel\"",
            "",
            &[
                target("bob", BOB, bob_port),
                target("carol", CAROL, carol_port),
            ],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_rings_loses.xml",
        &[],
    );
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/callee_answers.xml",
        &[
            "-key", "callee", "carol", "-key", "sess", "3333", "-d", "500",
        ],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_gets_carol.xml", "both");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &[&bob, &carol], false);
    // Both rang at once; bob was cancelled once carol answered.
    let bob_invite = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let carol_invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert!(
        (bob_invite.at - carol_invite.at).abs() < 0.4,
        "rung at once: bob at {}, carol at {}",
        bob_invite.at,
        carol_invite.at
    );
    let answer = carol.find("200", |m| m.sent && m.is_response(200, "INVITE"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    assert!(
        in_order(answer, cancel),
        "bob was cancelled before carol answered"
    );
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &carol,
        |m| m.is_request("INVITE"),
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &carol,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// Flow 7: sequential ringing with a per-target timeout: bob rings for its `timeout_s =
/// 2` and is cancelled, then carol rings and answers.
#[test]
fn sequential_ring_moves_on_after_the_target_timeout() {
    let test = "b2b-sequential";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &bridge_route(
            "next",
            "ring = \"sequential\"",
            "",
            &[
                format!("{}\ntimeout_s = 2", target("bob", BOB, bob_port)),
                target("carol", CAROL, carol_port),
            ],
        ),
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_rings_cancelled.xml",
        &[],
    );
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/callee_answers.xml",
        &["-key", "callee", "carol", "-key", "sess", "3333"],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_gets_carol.xml", "next");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &[&bob, &carol], false);
    let bob_invite = bob.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let cancel = bob.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    let rang = cancel.at - bob_invite.at;
    assert!(
        (1.8..4.0).contains(&rang),
        "bob rang {rang:.2} s, not its timeout_s = 2"
    );
    let carol_invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert!(
        carol_invite.at - bob_invite.at >= 1.8,
        "carol rang before bob's time was up"
    );
    assert_relayed_as_is(
        "200 for the INVITE",
        &carol,
        |m| m.is_response(200, "INVITE"),
        &alice,
        |m| m.is_response(200, "INVITE"),
    );
    carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert_all_ended(&daemon);
}

/// The transfer flows' routes: `bob` bridged to bob, and `carol` (the Refer-To target,
/// at Tandem) bridged to carol passing what the transfer put on the new INVITE; both
/// routes with `keys` (`media`).
fn transfer_routes(keys: &str, bob_port: u16, carol_port: u16) -> String {
    format!(
        "{}\n{}",
        bridge_route("bob", keys, "", &[target("bob", BOB, bob_port)]),
        bridge_route(
            "carol",
            &format!("{keys}\npass_headers = [\"Referred-By\", \"User-to-User\", \"X-Case\"]"),
            "",
            &[target("carol", CAROL, carol_port)],
        )
    )
}

/// The transfer's progress as the transferor got it (RFC 3515 §2.4.5): each NOTIFY's
/// sipfrag status line and Subscription-State, in order. Every one is of the `refer`
/// event package, its `id` (if any) the REFER's CSeq number (RFC 3515 §2.4.6), with a
/// `message/sipfrag` body.
fn notified(transferor: &Finished) -> Vec<(String, String)> {
    let refer = transferor.find("REFER", |m| m.sent && m.is_request("REFER"));
    let refer_seq = refer
        .header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or_default();
    transferor
        .received()
        .filter(|m| m.is_request("NOTIFY"))
        .map(|m| {
            let event = m.header("Event").unwrap_or_default();
            let mut params = event.split(';').map(str::trim);
            assert_eq!(params.next(), Some("refer"), "{:?}", m.headers);
            for param in params {
                if let Some(id) = param.strip_prefix("id=") {
                    assert_eq!(id, refer_seq, "{:?}", m.headers);
                }
            }
            assert!(
                m.header("Content-Type")
                    .is_some_and(|t| t.starts_with("message/sipfrag")),
                "{:?}",
                m.headers
            );
            let frag = String::from_utf8_lossy(&m.body);
            (
                frag.lines().next().unwrap_or_default().trim().to_owned(),
                m.header("Subscription-State")
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// The last NOTIFY the transferor got.
fn final_notify(transferor: &Finished) -> &SipMessage {
    transferor
        .messages
        .iter()
        .rev()
        .find(|m| !m.sent && m.is_request("NOTIFY"))
        .unwrap_or_else(|| panic!("no NOTIFY\n{}", transferor.report()))
}

/// Topology hiding across a transfer: as [`assert_hidden`] for all three, and carol saw
/// nothing of bob's address either, but in the Referred-By bob wrote himself (RFC 3892:
/// the referrer's identity, passed on as it is; it may be signed).
#[track_caller]
fn assert_transfer_hidden(alice: &Finished, bob: &Finished, carol: &Finished, bodies_too: bool) {
    assert_hidden(alice, &[bob, carol], bodies_too);
    let leaked = leaks(carol, &[BOB], bodies_too, &["Referred-By", "b"]);
    assert!(leaked.is_empty(), "carol saw bob's address: {leaked:#?}");
    for id in carol.call_ids() {
        assert!(!bob.call_ids().contains(&id), "bob and carol share {id}");
    }
}

/// What the transfer put on carol's INVITE (RFC 3892, RFC 7433, RFC 3261 §19.1.5).
#[track_caller]
fn assert_referred(carol: &Finished) {
    let invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert_eq!(
        invite.header("Referred-By"),
        Some(format!("<sip:bob@{BOB}>").as_str())
    );
    assert_eq!(invite.header("X-Case"), Some("blind"));
    assert!(
        invite
            .header("User-to-User")
            .is_some_and(|u| u.starts_with("56a390f3d2b7310023a2")),
        "{:?}",
        invite.headers
    );
}

/// Flow 8: blind transfer, signalling-only (RFC 3515, RFC 5589 §6). Bob REFERs the
/// caller to carol (routed through Tandem); bob gets 202 and NOTIFYs 100, 180, 200 (the
/// last ends the subscription), then hangs up. Carol's INVITE carries Referred-By,
/// User-to-User and X-Case, and A's SDP as A wrote it; A is re-INVITEd in its own dialog
/// with carol's SDP, its origin line continued from bob's (o=bob 2222, version 2,
/// RFC 3264 §8). A's BYE then reaches carol.
#[test]
fn blind_transfer_signalling_only() {
    let test = "b2b-transfer-signalling";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &transfer_routes("", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/transfer_target_answers.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_transferred.xml", "bob");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, false);
    let progress = notified(&bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert!(progress[..2].iter().all(|(_, s)| s.starts_with("active")));
    assert!(
        progress[2].1.starts_with("terminated") && progress[2].1.contains("reason=noresource"),
        "{progress:?}"
    );
    // Bob left once told the transfer succeeded.
    let done = final_notify(&bob);
    let left = bob.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(in_order(done, left), "bob hung up before the final NOTIFY");
    assert_referred(&carol);
    // Carol got the SDP A had offered, as it was.
    assert_relayed_as_is(
        "INVITE",
        &alice,
        |m| m.is_request("INVITE"),
        &carol,
        |m| m.is_request("INVITE"),
    );
    // A's re-INVITE is carol's answer, with the origin of the session A had with bob.
    let bob_sdp = String::from_utf8_lossy(
        &bob.find("200", |m| m.sent && m.is_response(200, "INVITE"))
            .body,
    )
    .into_owned();
    let carol_sdp = String::from_utf8_lossy(
        &carol
            .find("200", |m| m.sent && m.is_response(200, "INVITE"))
            .body,
    )
    .into_owned();
    let bob_origin = format!("o=bob 2222 1 IN IP4 {BOB}");
    let carol_origin = format!("o=carol 3333 1 IN IP4 {CAROL}");
    assert!(bob_sdp.contains(&bob_origin), "{bob_sdp}");
    assert!(carol_sdp.contains(&carol_origin), "{carol_sdp}");
    let reoffer = alice.find("re-INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert_eq!(
        String::from_utf8_lossy(&reoffer.body),
        carol_sdp.replace(&carol_origin, &format!("o=bob 2222 2 IN IP4 {BOB}")),
        "A's new SDP is carol's with the origin line continued"
    );
    assert!(
        reoffer.at
            >= carol
                .find("200", |m| m.sent && m.is_response(200, "INVITE"))
                .at
    );
    // A's hang-up reached carol.
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye));
    assert_all_ended(&daemon);
}

/// Flow 9: blind transfer, media anchored (RFC 7092 §3.1.3). As flow 8, but A hears
/// nothing of it (the relay is re-joined; no re-INVITE, which would fail A's scenario),
/// and carol's INVITE has Tandem's SDP, not A's. A hangs up after the transfer; its BYE
/// reaches carol.
#[test]
fn blind_transfer_media_anchored() {
    let test = "b2b-transfer-anchored";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(
        test,
        &transfer_routes("media = \"anchored\"", bob_port, carol_port),
    );
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/transfer_target_answers.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller_with(
        test,
        &daemon,
        "b2bua/caller_waits_hangs_up.xml",
        "bob",
        &["-d", "1500"],
    );
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, true);
    let statuses: Vec<String> = notified(&bob).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        statuses,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert_referred(&carol);
    let invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let sdp = String::from_utf8_lossy(&invite.body);
    assert!(sdp.contains(&format!("c=IN IP4 {TANDEM}")), "{sdp}");
    assert!(!sdp.contains("o=alice") && !sdp.contains("o=bob"), "{sdp}");
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    // The transfer was over before A hung up (else this flow tested something else).
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(in_order(final_notify(&bob), hung_up), "A hung up too early");
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye));
    assert_all_ended(&daemon);
}

/// Flow 10: a transfer to a busy target (RFC 3515 §2.4.5). Carol answers 486; bob's
/// final NOTIFY says `SIP/2.0 486 Busy Here`; bob stays, and A stays bridged to bob: A's
/// BYE reaches bob. A is never re-INVITEd.
#[test]
fn transfer_to_a_busy_target_keeps_the_bridge() {
    let test = "b2b-transfer-busy";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &transfer_routes("", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "b2bua/transfer_target_busy.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "b2bua/callee_refers_target_busy.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller_with(
        test,
        &daemon,
        "b2bua/caller_waits_hangs_up.xml",
        "bob",
        &["-d", "1500"],
    );
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_transfer_hidden(&alice, &bob, &carol, false);
    let progress = notified(&bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]);
    assert!(progress[1].1.starts_with("terminated"), "{progress:?}");
    assert_referred(&carol);
    assert!(
        !bob.messages.iter().any(|m| m.sent && m.is_request("BYE")),
        "bob hung up"
    );
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(in_order(final_notify(&bob), hung_up), "A hung up too early");
    let bye = bob.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye), "bob's leg ended before A hung up");
    assert_all_ended(&daemon);
}

//! SIPp conformance of attended transfer (RFC 5589 §7, RFC 3891 Replaces) through the
//! real daemon, with three parties on three loopback addresses (the harness of
//! `sipp_b2bua.rs`, `common::parties`): Tandem on 127.0.0.10, the caller A (alice, a SIPp
//! UAC) on 127.0.0.11, B (bob) on 127.0.0.12 and C (carol) on 127.0.0.13.
//!
//! A calls `bob`, bridged to bob (bridge 1); bob calls `carol` through Tandem, bridged to
//! carol (bridge 2), then REFERs A with a Replaces naming that consultation dialog, one
//! of Tandem's own: Tandem joins A and carol itself (no INVITE goes anywhere), ends the
//! consultation dialog with `Reason: ... "Call replaced"`, and bob hangs up A's dialog.
//! One SIPp call plays bob in both dialogs: its consultation INVITE's Call-ID is
//! `consult///` followed by the Call-ID of A's dialog at bob, which SIPp files under the
//! part after `///` (its documented way for a call to hold several Call-IDs), so the
//! REFER can name the consultation's Call-ID and tags, all caught by `ereg` in the same
//! scenario; for Tandem they are two unrelated Call-IDs.
//!
//! Each test starts its own daemon and its parties (callees first); every SIPp must exit
//! 0: the scenarios (`tests/sipp/attended/`, each one's comment says what it checks)
//! fail on any unexpected message and on their `check_it` regexps. On top of that, the
//! message traces are read back here: the order of events across parties, the NOTIFY
//! progress, the Replaces matched against the consultation dialog, the SDP each side got
//! (origin lines continued), topology hiding. Each test ends with the daemon holding no
//! call and no dialog.
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

/// A route bridging the Request-URI user `user` to `user` at `ip:port`, with `keys`
/// (`media`).
fn bridge_route(user: &str, keys: &str, ip: &str, port: u16) -> String {
    format!(
        "[[route]]\nname = \"{user}\"\naction = \"bridge\"\n{keys}\n\
         [route.match]\nuser = '^{user}$'\n\
         [[route.targets]]\nuri = \"sip:{user}@{ip}:{port}\"\n"
    )
}

/// The attended flows' routes: `bob` (A's call) bridged to bob, `carol` (bob's
/// consultation) bridged to carol, both with `keys`.
fn routes(keys: &str, bob_port: u16, carol_port: u16) -> String {
    format!(
        "{}\n{}",
        bridge_route("bob", keys, BOB, bob_port),
        bridge_route("carol", keys, CAROL, carol_port)
    )
}

/// The transferor's NOTIFYs (RFC 3515 §2.4.5), in order: sipfrag status line and
/// Subscription-State. Every one is in the dialog the REFER was sent in, of the `refer`
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
            assert_eq!(m.header("Call-ID"), refer.header("Call-ID"));
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
            (
                m.body_text()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
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

/// A message's tag parameter in `header` (From or To).
fn tag<'m>(m: &'m SipMessage, header: &str) -> &'m str {
    let value = m.header(header).unwrap_or_default();
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .unwrap_or_else(|| panic!("no tag in {header}: {value}"))
}

/// Topology hiding across the transfer (RFC 7092 §3.1, RFC 5853 §3.1): no header of any
/// message A got names bob's or carol's address; none bob got names A's or carol's, or
/// carries A's Call-ID or tag (`secret`); none carol got names A's or bob's, or carries
/// A's or bob's Call-IDs and tags (`secret`, `consult`); but in `except` (headers a
/// party writes for the one it names: Referred-By, Replaces). No two parties share a
/// Call-ID. `bodies_too` (media anchored): the SDP hides them as well.
#[track_caller]
fn assert_hidden(
    alice: &Finished,
    bob: &Finished,
    carol: &Finished,
    bodies_too: bool,
    except: &[&str],
) {
    for (party, needles) in [
        (alice, &[BOB, CAROL][..]),
        (bob, &[ALICE, CAROL, "secret"][..]),
        (carol, &[ALICE, BOB, "secret", "consult"][..]),
    ] {
        let leaked = leaks(party, needles, bodies_too, except);
        assert!(
            leaked.is_empty(),
            "{} saw too much: {leaked:#?}",
            party.role
        );
    }
    for (one, other) in [(alice, bob), (alice, carol), (bob, carol)] {
        for id in one.call_ids() {
            assert!(
                !other.call_ids().contains(&id),
                "{} and {} share the Call-ID {id}",
                one.role,
                other.role
            );
        }
    }
}

/// The join, as bob saw it (RFC 5589 §7): bob's consultation reached Tandem; the REFER,
/// in A's dialog, named it in its Refer-To's Replaces (Call-ID, to-tag = Tandem's,
/// from-tag = bob's, RFC 3891 §6.1); 202 and NOTIFY 100 then 200, the last one ending
/// the subscription; Tandem's BYE of the consultation dialog with `Reason:
/// SIP;cause=200;text="Call replaced"` (RFC 3326), after the REFER's 202 (before or
/// after the NOTIFY 200: that one waits for bob's answer to the NOTIFY 100); bob's own
/// BYE of A's dialog only after both. Returns the BYE of the consultation dialog.
#[track_caller]
fn assert_joined_by_refer(daemon: &Daemon, bob: &Finished) -> SipMessage {
    let first = bob.find("A's INVITE", |m| !m.sent && m.is_request("INVITE"));
    let dialog = first.header("Call-ID").unwrap();
    let consult = bob.find("consultation INVITE", |m| m.sent && m.is_request("INVITE"));
    let consult_id = consult.header("Call-ID").unwrap();
    assert_eq!(consult_id, format!("consult///{dialog}"));
    assert_eq!(
        consult.first_line,
        format!("INVITE sip:carol@{} SIP/2.0", tandem_address(daemon))
    );
    let answered = bob.find("200 for the consultation", |m| {
        !m.sent && m.is_response(200, "INVITE") && m.header("Call-ID") == Some(consult_id)
    });
    let refer = bob.find("REFER", |m| m.sent && m.is_request("REFER"));
    assert_eq!(refer.header("Call-ID"), Some(dialog), "in A's dialog");
    let replaces = format!(
        "consult///{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        dialog.replace('@', "%40"),
        tag(answered, "To"),
        tag(consult, "From")
    );
    assert_eq!(
        refer.header("Refer-To"),
        Some(format!("<sip:carol@{}?Replaces={replaces}>", tandem_address(daemon)).as_str())
    );
    let accepted = bob.find("202", |m| !m.sent && m.is_response(202, "REFER"));
    let progress = notified(bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
    assert!(progress[0].1.starts_with("active"), "{progress:?}");
    assert!(progress[1].1.starts_with("terminated"), "{progress:?}");
    let done = final_notify(bob);
    assert!(in_order(accepted, done));
    let replaced = bob.find("BYE of the consultation", |m| {
        !m.sent && m.is_request("BYE") && m.header("Call-ID") == Some(consult_id)
    });
    assert_eq!(
        replaced.header("Reason"),
        Some("SIP;cause=200;text=\"Call replaced\"")
    );
    assert!(
        in_order(accepted, replaced),
        "consultation ended before the 202"
    );
    let left = bob.find("BYE of A's dialog", |m| {
        m.sent && m.is_request("BYE") && m.header("Call-ID") == Some(dialog)
    });
    assert!(in_order(done, left), "bob hung up before the final NOTIFY");
    assert!(
        in_order(replaced, left),
        "bob hung up before the consultation ended"
    );
    // Bob's legs were never re-INVITEd (A's INVITE is the only one bob got).
    assert_eq!(
        bob.received().filter(|m| m.is_request("INVITE")).count(),
        1,
        "bob was re-INVITEd"
    );
    replaced.clone()
}

/// Flow 1: attended transfer, both bridges signalling-only (RFC 7092 §3.1.1). Tandem
/// joins the far legs itself: carol is re-INVITEd in her dialog with A's SDP (its
/// origin continued from bob's consultation SDP, o=bob 2223 2), then A in its dialog
/// with carol's answer (origin continued from bob's, o=bob 2222 2, RFC 3264 §8); only
/// then bob hears NOTIFY 200 and the consultation gets its BYE. No INVITE reaches carol
/// after the join (her scenario fails on one); A's BYE then reaches carol.
#[test]
fn attended_transfer_signalling_only() {
    let test = "att-signalling";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &routes("", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "attended/consulted_reinvited.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "attended/callee_consults_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller(test, &daemon, "b2bua/caller_transferred.xml", "bob");
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &bob, &carol, false, &[]);
    let replaced = assert_joined_by_refer(&daemon, &bob);
    // Bob's consultation SDP reached carol as bob wrote it, and hers reached bob.
    let body_of = |party: &Finished, sent: bool, which: &dyn Fn(&SipMessage) -> bool| {
        party
            .find("SDP", |m| m.sent == sent && which(m))
            .body_text()
    };
    let consult_offer = body_of(&bob, true, &|m| m.is_request("INVITE"));
    assert_eq!(
        body_of(&carol, false, &|m| m.is_request("INVITE")),
        consult_offer
    );
    let carol_answer = body_of(&carol, true, &|m| m.is_response(200, "INVITE"));
    assert_eq!(
        body_of(&bob, false, &|m| m.is_response(200, "INVITE")
            && m.header("Call-ID")
                .is_some_and(|c| c.starts_with("consult///"))),
        carol_answer
    );
    // Carol's re-INVITE: A's offer with the origin carol knew (bob's consultation) + 1.
    let alice_offer = body_of(&alice, true, &|m| m.is_request("INVITE"));
    let alice_origin = format!("o=alice 1111 1 IN IP4 {ALICE}");
    assert!(alice_offer.contains(&alice_origin), "{alice_offer}");
    let invites: Vec<&SipMessage> = carol
        .received()
        .filter(|m| m.is_request("INVITE"))
        .collect();
    assert_eq!(invites.len(), 2, "carol: the call and the join's re-INVITE");
    assert_eq!(
        invites[1].body_text(),
        alice_offer.replace(&alice_origin, &format!("o=bob 2223 2 IN IP4 {BOB}")),
        "carol's new SDP is A's with the origin line continued"
    );
    // A's re-INVITE: carol's answer to it, with the origin A knew (bob's) + 1.
    let reanswer = carol
        .messages
        .iter()
        .filter(|m| m.sent && m.is_response(200, "INVITE"))
        .nth(1)
        .expect("carol answered the re-INVITE")
        .clone();
    let carol_origin = format!("o=carol 3333 2 IN IP4 {CAROL}");
    assert!(reanswer.body_text().contains(&carol_origin));
    let reoffer = alice.find("re-INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert_eq!(
        reoffer.body_text(),
        reanswer
            .body_text()
            .replace(&carol_origin, &format!("o=bob 2222 2 IN IP4 {BOB}")),
        "A's new SDP is carol's answer with the origin line continued"
    );
    // One after the other: carol first, A once carol answered, bob told once A answered.
    let reanswered_by_alice = alice.find("200 for the re-INVITE", |m| {
        m.sent && m.is_response(200, "INVITE")
    });
    assert!(in_order(
        bob.find("REFER", |m| m.sent && m.is_request("REFER")),
        invites[1]
    ));
    assert!(in_order(&reanswer, reoffer));
    assert!(in_order(reanswered_by_alice, final_notify(&bob)));
    assert!(in_order(reanswered_by_alice, &replaced));
    // A's hang-up reached carol.
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye));
    assert_all_ended(&daemon);
}

/// Flow 2: attended transfer, both bridges media-anchored (RFC 7092 §3.1.3): the join
/// is in Tandem's relay only. Neither A nor carol is re-INVITEd (their scenarios fail on
/// one); bob hears 202, NOTIFY 100 and 200 at once, the consultation gets its BYE; A,
/// after the transfer, hangs up and carol gets the BYE.
#[test]
fn attended_transfer_media_anchored() {
    let test = "att-anchored";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &routes("media = \"anchored\"", bob_port, carol_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "attended/consulted_answers.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "attended/callee_consults_refers.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::caller_with(
        test,
        &daemon,
        "b2bua/caller_waits_hangs_up.xml",
        "bob",
        &["-d", "2000"],
    );
    let (bob, carol) = (bob.finish(), carol.finish());
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_hidden(&alice, &bob, &carol, true, &[]);
    assert_joined_by_refer(&daemon, &bob);
    for (party, got) in [
        (
            &alice,
            alice.find("200", |m| !m.sent && m.is_response(200, "INVITE")),
        ),
        (
            &carol,
            carol.find("INVITE", |m| !m.sent && m.is_request("INVITE")),
        ),
    ] {
        let sdp = got.body_text();
        assert!(
            sdp.contains(&format!("c=IN IP4 {TANDEM}")),
            "{}: {sdp}",
            party.role
        );
    }
    for party in [&alice, &carol] {
        assert_eq!(
            party.received().filter(|m| m.is_request("INVITE")).count(),
            usize::from(party.role == "carol"),
            "{} was re-INVITEd",
            party.role
        );
    }
    // The transfer was over before A hung up (else this flow tested something else).
    let hung_up = alice.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(in_order(final_notify(&bob), hung_up), "A hung up too early");
    let bye = carol.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye));
    assert_all_ended(&daemon);
}

/// Flow 3: a transfer to a busy target (RFC 3515 §2.4.5) whose Replaces names a dialog
/// Tandem does not have (bob consulted carol directly). Tandem does what a plain
/// transferee does (RFC 5589 §7): an INVITE to the Refer-To target (carol's own
/// address) with that Replaces, decoded (RFC 3891 §3), and Referred-By. Carol is busy:
/// bob's final NOTIFY says `SIP/2.0 486 Busy Here` and A stays with bob: never
/// re-INVITEd, its BYE reaches bob.
#[test]
fn attended_transfer_to_a_busy_target_keeps_the_bridge() {
    let test = "att-busy";
    let (bob_port, carol_port) = (free_port_on(BOB), free_port_on(CAROL));
    let daemon = tandem(test, &bridge_route("bob", "", BOB, bob_port));
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "attended/target_busy.xml",
        &[],
    );
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "attended/callee_refers_unknown_dialog.xml",
        &["-key", "carol", &format!("{CAROL}:{carol_port}")],
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
    // Bob wrote Referred-By and the Replaces (bob's own dialog with carol) for carol.
    assert_hidden(&alice, &bob, &carol, false, &["Referred-By", "Replaces"]);
    let refer = bob.find("REFER", |m| m.sent && m.is_request("REFER"));
    let invite = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let decoded = |uri: &str| {
        uri.replace("%40", "@")
            .replace("%3B", ";")
            .replace("%3D", "=")
    };
    assert_eq!(
        refer.header("Refer-To").map(decoded),
        Some(format!(
            "<sip:carol@{CAROL}:{carol_port}?Replaces={}>",
            invite.header("Replaces").unwrap()
        )),
        "carol got the Replaces bob named"
    );
    assert_eq!(
        invite.header("Referred-By"),
        Some(format!("<sip:bob@{BOB}>").as_str())
    );
    let progress = notified(&bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]);
    assert!(progress[0].1.starts_with("active"), "{progress:?}");
    assert!(progress[1].1.starts_with("terminated"), "{progress:?}");
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

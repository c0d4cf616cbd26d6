//! SIPp conformance of call park through the real daemon, with three parties on three
//! loopback addresses (the harness of `sipp_b2bua.rs`, `common::parties`): Tandem on
//! 127.0.0.10, the caller A (alice, a SIPp UAC) on 127.0.0.11, B (bob) on 127.0.0.12 and
//! C (carol) on 127.0.0.13. A call goes to an orbit (`[park]`, orbits 701-702) either by
//! a REFER of the callee to the park number (`sip:700@127.0.0.10:PORT`, RFC 3515) or by
//! a `park` route; it is retrieved by a call to the orbit (`sip:701@…`), or rings back
//! `[park] fallback` (carol) after `timeout_s`; a watcher follows the orbit with the
//! dialog event package (RFC 4235, BLF). Each test starts its own daemon and its parties,
//! in the order the flow needs (a party waits for another's message in its trace); every
//! SIPp must exit 0: the scenarios (`tests/sipp/park/`, each one's comment says what it
//! checks) fail on any unexpected message and on their `check_it` regexps. On top of
//! that the message traces are read back here: the order of events across parties,
//! ring-back timing, topology hiding, the Reason of a BYE, and the daemon's log lines
//! for the park and the retrieval (SIPp hears no audio). Each test ends with the daemon
//! holding no call and no dialog.
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
use std::time::Duration;

/// A BLF phone watching the orbits.
const PHONE: &str = "127.0.0.14";

/// The daemon on 127.0.0.10 (SIP and media): orbits 701-702, calls ring back after
/// `timeout_s`, `fallback` (if any) rung for calls with no parker; `routes` its
/// `[[route]]` tables. Besides them, a `park` route for the user `parkme`.
fn tandem(name: &str, timeout_s: u64, fallback: Option<String>, routes: &str) -> Daemon {
    let fallback = fallback.map_or(String::new(), |f| format!("fallback = \"{f}\"\n"));
    Daemon::start_on(
        name,
        TANDEM,
        "",
        &format!(
            "[media]\naddress = \"{TANDEM}\"\ntimeout_s = 0\n\n\
             [park]\nfirst_orbit = 701\nlast_orbit = 702\ntimeout_s = {timeout_s}\n\
             number = \"700\"\n{fallback}\n\
             {routes}\n\
             [[route]]\nname = \"parkme\"\naction = \"park\"\n\
             [route.match]\nuser = '^parkme$'\n"
        ),
    )
}

/// A route bridging `bob` to bob on `port`, with `keys` (`media`).
fn bob_route(keys: &str, port: u16) -> String {
    format!(
        "[[route]]\nname = \"bob\"\naction = \"bridge\"\n{keys}\n\
         [route.match]\nuser = '^bob$'\n\
         [[route.targets]]\nuri = \"sip:bob@{BOB}:{port}\"\n"
    )
}

/// The daemon logged a line with all of `words` (its park and retrieval lines).
#[track_caller]
fn assert_logged(daemon: &Daemon, words: &[&str]) {
    let lines = daemon.lines();
    assert!(
        lines.iter().any(|l| words.iter().all(|w| l.contains(w))),
        "no log line with {words:?}:\n{}",
        lines.join("\n")
    );
}

/// What bob heard of the park by NOTIFY (RFC 3515 §2.4.5): each sipfrag status line and
/// Subscription-State, in order.
fn notified(bob: &Finished) -> Vec<(String, String)> {
    bob.received()
        .filter(|m| m.is_request("NOTIFY"))
        .map(|m| {
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

/// The REFER to the park number was accepted (202), NOTIFY 100 then 200 (the last one
/// ending the subscription), and bob hung up only after that; returns the final NOTIFY.
#[track_caller]
fn assert_parked_by_refer(bob: &Finished) -> &SipMessage {
    let refer = bob.find("REFER", |m| m.sent && m.is_request("REFER"));
    assert!(
        refer
            .header("Refer-To")
            .is_some_and(|r| r.starts_with(&format!("<sip:700@{TANDEM}:"))),
        "{:?}",
        refer.headers
    );
    bob.find("202", |m| !m.sent && m.is_response(202, "REFER"));
    let progress = notified(bob);
    let statuses: Vec<&str> = progress.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]);
    assert!(progress[0].1.starts_with("active"), "{progress:?}");
    assert!(progress[1].1.starts_with("terminated"), "{progress:?}");
    let done = bob
        .messages
        .iter()
        .rev()
        .find(|m| !m.sent && m.is_request("NOTIFY"))
        .unwrap();
    let left = bob.find("BYE", |m| m.sent && m.is_request("BYE"));
    assert!(in_order(done, left), "bob hung up before the final NOTIFY");
    done
}

/// Topology hiding across the park: neither alice nor carol saw another party's address
/// or A's Call-ID (`secret`) in a header (with `bodies_too`, in the SDP either), bob saw
/// nothing of alice's; no two parties share a Call-ID.
#[track_caller]
fn assert_park_hidden(alice: &Finished, others: &[&Finished], bodies_too: bool) {
    let leaked = leaks(alice, &[BOB, CAROL], bodies_too, &[]);
    assert!(leaked.is_empty(), "alice saw another party: {leaked:#?}");
    for other in others {
        let leaked = leaks(other, &[ALICE, "secret"], bodies_too, &[]);
        assert!(leaked.is_empty(), "{} saw alice: {leaked:#?}", other.role);
        for id in other.call_ids() {
            assert!(
                !alice.call_ids().contains(&id),
                "{} and alice share the Call-ID {id}",
                other.role
            );
        }
    }
}

/// The retriever's call and the parked call end together: carol hung up, then alice got
/// Tandem's BYE.
#[track_caller]
fn assert_ended_by(alice: &Finished, taker: &Finished) {
    let hung_up = taker.find("BYE", |m| m.sent && m.is_request("BYE"));
    let bye = alice.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(in_order(hung_up, bye), "alice's call ended before carol's");
    assert!(
        bye.header("Reason")
            .is_none_or(|r| !r.contains("cause=480")),
        "the parked call timed out instead: {:?}",
        bye.headers
    );
}

/// Flow 1: park by REFER and retrieve by dialling the orbit, media anchored. A calls bob
/// (bridged through Tandem's relay); bob REFERs to the park number, gets 202 and NOTIFYs
/// 100 and 200, and hangs up: A waits in orbit 701 without a request (its media is on
/// Tandem already). Carol dials 701: Tandem answers with its own SDP, and at the ACK A
/// and carol are joined; carol hangs up after a second, and A gets a BYE.
#[test]
fn park_by_refer_and_retrieve_media_anchored() {
    let test = "park-refer-anchored";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(test, 30, None, &bob_route("media = \"anchored\"", bob_port));
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "park/callee_parks.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::calling(test, &daemon, "park/caller_waits_in_orbit.xml", "bob", &[]);
    // Bob leaves once told the caller is parked.
    let bob = bob.finish();
    let carol = Party::dialer(
        test,
        "carol",
        &daemon,
        CAROL,
        "park/retriever_dials_orbit.xml",
        "701",
        &["-d", "1000"],
    )
    .finish();
    let alice = alice.finish();
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_park_hidden(&alice, &[&bob, &carol], true);
    assert_eq!(leaks(&carol, &[BOB], true, &[]), Vec::<String>::new());
    let parked = assert_parked_by_refer(&bob);
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    let dialled = carol.find("INVITE", |m| m.sent && m.is_request("INVITE"));
    assert!(in_order(parked, dialled), "carol dialled before the park");
    assert_ended_by(&alice, &carol);
    assert_logged(&daemon, &["call parked", "orbit=701"]);
    assert_logged(&daemon, &["parked call retrieved", "orbit=701", "Invite"]);
    assert_all_ended(&daemon);
}

/// Flow 1, signalling-only: as above, but A's media went to bob until the park, so
/// Tandem re-INVITEs A with its own offer (origin line continued: o=bob 2222 2), and
/// tells bob `200` only once A answered it (the music plays from then on). The retrieval
/// joins A's new stream to carol's without another request to A.
#[test]
fn park_by_refer_and_retrieve_signalling_only() {
    let test = "park-refer-signalling";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(test, 30, None, &bob_route("", bob_port));
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "park/callee_parks.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::calling(
        test,
        &daemon,
        "park/caller_parked_signalling.xml",
        "bob",
        &[],
    );
    let bob = bob.finish();
    let carol = Party::dialer(
        test,
        "carol",
        &daemon,
        CAROL,
        "park/retriever_dials_orbit.xml",
        "701",
        &["-d", "1000"],
    )
    .finish();
    let alice = alice.finish();
    assert_succeeded(&[&alice, &bob, &carol], &daemon);
    assert_park_hidden(&alice, &[&bob, &carol], false);
    assert_eq!(leaks(&carol, &[BOB], true, &[]), Vec::<String>::new());
    let parked = assert_parked_by_refer(&bob);
    // The re-INVITE came after the REFER, and bob heard 200 after A's answer to it.
    let refer = bob.find("REFER", |m| m.sent && m.is_request("REFER"));
    let reinvites: Vec<&SipMessage> = alice
        .received()
        .filter(|m| m.is_request("INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 1, "A re-INVITEd once, at the park");
    assert!(in_order(refer, reinvites[0]));
    let answered = alice.find("200 for the re-INVITE", |m| {
        m.sent && m.is_response(200, "INVITE")
    });
    assert!(in_order(answered, parked), "bob heard 200 before the music");
    // Tandem's own offer, in the session A knew (RFC 3264 §8).
    let offer = reinvites[0].body_text();
    assert!(
        offer.contains("o=bob 2222 2 ") && offer.contains(&format!("c=IN IP4 {TANDEM}")),
        "{offer}"
    );
    assert!(!offer.contains("m=audio 42000 "), "bob's port: {offer}");
    assert_ended_by(&alice, &carol);
    assert_logged(&daemon, &["call parked", "orbit=701"]);
    assert_logged(&daemon, &["parked call retrieved", "orbit=701", "Invite"]);
    assert_all_ended(&daemon);
}

/// Flow 2: dialling an orbit with no call in it gets 404 (Orbit Empty), even when another
/// orbit holds one: a `park` route put A in 701, carol dials 702. A then waits until
/// the park times out with nobody to ring (no parker, no fallback) and gets a BYE with
/// Reason cause=480.
#[test]
fn an_empty_orbit_is_not_found() {
    let test = "park-empty-orbit";
    let daemon = tandem(test, 2, None, "");
    let mut alice = Party::calling(
        test,
        &daemon,
        "park/caller_waits_in_orbit.xml",
        "parkme",
        &[],
    );
    alice.wait_for("ACK sent", Duration::from_secs(10), |m| {
        m.sent && m.is_request("ACK")
    });
    daemon.wait_for_line("call parked", Duration::from_secs(5));
    let carol = Party::dialer(
        test,
        "carol",
        &daemon,
        CAROL,
        "park/dials_empty_orbit.xml",
        "702",
        &[],
    )
    .finish();
    let alice = alice.finish();
    assert_succeeded(&[&alice, &carol], &daemon);
    let not_found = carol.find("404", |m| !m.sent && m.is_response(404, "INVITE"));
    assert!(
        not_found.first_line.contains("Orbit Empty"),
        "{not_found:?}"
    );
    assert!(
        !carol.received().any(|m| m.is_response(200, "INVITE")),
        "carol was answered"
    );
    let bye = alice.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(
        bye.header("Reason")
            .is_some_and(|r| r.contains("cause=480")),
        "{:?}",
        bye.headers
    );
    assert_all_ended(&daemon);
}

/// Flow 3: the park timeout rings back. A `park` route answers A (Tandem's SDP) and parks
/// it in 701; with no parker, after `timeout_s = 2` Tandem rings `[park] fallback`
/// (carol) from the orbit with its own offer; carol answers and is joined to A; carol
/// hangs up after a second and A gets a BYE.
#[test]
fn park_timeout_rings_back_the_fallback() {
    let test = "park-ringback";
    let carol_port = free_port_on(CAROL);
    let daemon = tandem(test, 2, Some(format!("sip:carol@{CAROL}:{carol_port}")), "");
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "park/ringback_answers.xml",
        &["-key", "callee", "carol", "-d", "1000"],
    );
    let alice = Party::caller(test, &daemon, "park/caller_waits_in_orbit.xml", "parkme");
    let carol = carol.finish();
    assert_succeeded(&[&alice, &carol], &daemon);
    assert_park_hidden(&alice, &[&carol], true);
    // Rung back after the timeout: from A's ACK (the park) to carol's INVITE.
    let parked = alice.find("ACK", |m| m.sent && m.is_request("ACK"));
    let rung = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let waited = rung.at - parked.at;
    assert!(
        (1.8..4.0).contains(&waited),
        "rung back after {waited:.2} s, not timeout_s = 2"
    );
    assert_ended_by(&alice, &carol);
    assert_logged(&daemon, &["park timed out", "orbit=701"]);
    assert_logged(&daemon, &["parked call retrieved", "orbit=701", "RingBack"]);
    assert_all_ended(&daemon);
}

/// Flow 3, the parker is rung back: bob parks A by REFER (media anchored) and hangs up;
/// nobody dials the orbit, so after `timeout_s = 2` Tandem rings bob back at the Contact
/// of the leg he parked from (through the flow that leg used); bob answers (a new SIPp
/// on bob's address) and is joined to A again; he hangs up and A gets a BYE.
#[test]
fn park_timeout_rings_back_the_parker() {
    let test = "park-ringback-parker";
    let bob_port = free_port_on(BOB);
    let daemon = tandem(test, 2, None, &bob_route("media = \"anchored\"", bob_port));
    let bob = Party::callee(
        test,
        "bob",
        (BOB, bob_port),
        "park/callee_parks.xml",
        &["-key", "tandem", &tandem_address(&daemon)],
    );
    let alice = Party::calling(test, &daemon, "park/caller_waits_in_orbit.xml", "bob", &[]);
    let bob = bob.finish();
    let parked = assert_parked_by_refer(&bob).at;
    let rung = Party::callee(
        test,
        "bob-rung-back",
        (BOB, bob_port),
        "park/ringback_answers.xml",
        &["-key", "callee", "bob", "-d", "1000"],
    )
    .finish();
    let alice = alice.finish();
    assert_succeeded(&[&alice, &bob, &rung], &daemon);
    assert_park_hidden(&alice, &[&bob, &rung], true);
    let invite = rung.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    let waited = invite.at - parked;
    assert!(
        (1.5..4.0).contains(&waited),
        "rung back after {waited:.2} s, not timeout_s = 2"
    );
    // To bob's Contact, as his leg knew it.
    let contact = bob
        .find("200", |m| m.sent && m.is_response(200, "INVITE"))
        .header("Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    assert!(
        invite.first_line.starts_with(&format!("INVITE {contact} ")),
        "{}",
        invite.first_line
    );
    assert!(
        !alice.received().any(|m| m.is_request("INVITE")),
        "A was re-INVITEd"
    );
    assert_ended_by(&alice, &rung);
    assert_logged(&daemon, &["park timed out", "orbit=701"]);
    assert_logged(&daemon, &["parked call retrieved", "orbit=701", "RingBack"]);
    assert_all_ended(&daemon);
}

/// Flow 3, the ring-back fails: carol answers 486, and with nobody left to take it the
/// parked call is ended: A gets a BYE with Reason cause=480 (RFC 3326).
#[test]
fn park_timeout_with_a_busy_ring_back_ends_the_call() {
    let test = "park-ringback-busy";
    let carol_port = free_port_on(CAROL);
    let daemon = tandem(test, 2, Some(format!("sip:carol@{CAROL}:{carol_port}")), "");
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "park/ringback_busy.xml",
        &[],
    );
    let alice = Party::caller(test, &daemon, "park/caller_waits_in_orbit.xml", "parkme");
    let carol = carol.finish();
    assert_succeeded(&[&alice, &carol], &daemon);
    assert_park_hidden(&alice, &[&carol], true);
    let busy = carol.find("486", |m| m.sent && m.is_response(486, "INVITE"));
    let bye = alice.find("BYE", |m| !m.sent && m.is_request("BYE"));
    assert!(
        in_order(busy, bye),
        "A was hung up before the ring-back failed"
    );
    let reason = bye.header("Reason").unwrap_or_default();
    assert!(
        reason.starts_with("SIP") && reason.contains("cause=480"),
        "{:?}",
        bye.headers
    );
    assert_all_ended(&daemon);
}

/// The dialog-info documents (RFC 4235 §4.1) count their versions 0, 1, 2... (the last,
/// `terminated`, NOTIFY may have none), and each is the full state of the orbit.
#[track_caller]
fn assert_versions(notifies: &[&SipMessage]) {
    let versions: Vec<String> = notifies
        .iter()
        .filter_map(|m| {
            let body = m.body_text();
            let root = body.split("<dialog-info ").nth(1)?;
            assert!(root.contains(" state=\"full\""), "{body}");
            let rest = root.split(" version=\"").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    assert!(versions.len() + 1 >= notifies.len(), "{versions:?}");
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(v, &i.to_string(), "versions {versions:?}");
    }
}

/// Flow 4: BLF (RFC 4235 over RFC 6665). A phone on 127.0.0.14 subscribes to orbit 701
/// and is told it is free; a `park` route parks A there (NOTIFY: one dialog, confirmed);
/// carol retrieves it by dialling 701 (NOTIFY: free again); the phone un-subscribes
/// (NOTIFY: terminated). The documents' versions count 0, 1, 2, 3.
#[test]
fn blf_watches_an_orbit() {
    let test = "park-blf";
    let daemon = tandem(test, 30, None, "");
    let mut phone = Party::dialer(
        test,
        "phone",
        &daemon,
        PHONE,
        "park/blf_watcher.xml",
        "701",
        &[],
    );
    phone.wait_for("first NOTIFY", Duration::from_secs(10), |m| {
        !m.sent && m.is_request("NOTIFY")
    });
    let mut alice = Party::calling(
        test,
        &daemon,
        "park/caller_waits_in_orbit.xml",
        "parkme",
        &[],
    );
    phone.wait_for("NOTIFY of the parked call", Duration::from_secs(10), |m| {
        !m.sent && m.is_request("NOTIFY") && m.body_text().contains("confirmed")
    });
    alice.wait_for("ACK sent", Duration::from_secs(1), |m| {
        m.sent && m.is_request("ACK")
    });
    let carol = Party::dialer(
        test,
        "carol",
        &daemon,
        CAROL,
        "park/retriever_dials_orbit.xml",
        "701",
        &["-d", "500"],
    )
    .finish();
    let (alice, phone) = (alice.finish(), phone.finish());
    assert_succeeded(&[&alice, &carol, &phone], &daemon);
    assert_ended_by(&alice, &carol);
    let notifies: Vec<&SipMessage> = phone
        .received()
        .filter(|m| m.is_request("NOTIFY"))
        .collect();
    assert_eq!(notifies.len(), 4, "{}", phone.report());
    assert_versions(&notifies);
    // Free, parked, free: the parked state came after A's ACK, the free one after carol's.
    let alice_ack = alice.find("ACK", |m| m.sent && m.is_request("ACK"));
    let carol_ack = carol.find("ACK", |m| m.sent && m.is_request("ACK"));
    assert!(in_order(alice_ack, notifies[1]) && in_order(carol_ack, notifies[2]));
    assert!(
        notifies[3]
            .header("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated")),
        "{:?}",
        notifies[3].headers
    );
    assert_all_ended(&daemon);
}

/// Flow 4, with a ring-back: the phone watches 701 while a `park` route parks A there
/// (confirmed) and, after `timeout_s = 2`, Tandem rings the fallback carol (early). While
/// carol rings, bob dials 701: he takes the call (confirmed, being answered), carol's
/// ring-back is cancelled with Reason "Call completed elsewhere", and at bob's ACK the
/// orbit is free. Bob hangs up, A gets a BYE; the phone un-subscribes.
#[test]
fn blf_shows_the_ring_back_and_a_retrieval_during_it() {
    let test = "park-blf-ringback";
    let carol_port = free_port_on(CAROL);
    let daemon = tandem(test, 2, Some(format!("sip:carol@{CAROL}:{carol_port}")), "");
    let carol = Party::callee(
        test,
        "carol",
        (CAROL, carol_port),
        "park/ringback_rings_cancelled.xml",
        &[],
    );
    let mut phone = Party::dialer(
        test,
        "phone",
        &daemon,
        PHONE,
        "park/blf_watcher_ringback.xml",
        "701",
        &[],
    );
    phone.wait_for("first NOTIFY", Duration::from_secs(10), |m| {
        !m.sent && m.is_request("NOTIFY")
    });
    let alice = Party::calling(
        test,
        &daemon,
        "park/caller_waits_in_orbit.xml",
        "parkme",
        &[],
    );
    phone.wait_for("NOTIFY of the ring-back", Duration::from_secs(10), |m| {
        !m.sent && m.is_request("NOTIFY") && m.body_text().contains("<state>early</state>")
    });
    let bob = Party::dialer(
        test,
        "bob",
        &daemon,
        BOB,
        "park/retriever_dials_orbit.xml",
        "701",
        &["-d", "500"],
    )
    .finish();
    let (alice, carol, phone) = (alice.finish(), carol.finish(), phone.finish());
    assert_succeeded(&[&alice, &bob, &carol, &phone], &daemon);
    assert_park_hidden(&alice, &[&bob, &carol], true);
    assert_ended_by(&alice, &bob);
    // Carol rang from the timeout until bob dialled.
    let parked = alice.find("ACK", |m| m.sent && m.is_request("ACK"));
    let rung = carol.find("INVITE", |m| !m.sent && m.is_request("INVITE"));
    assert!(
        (1.8..4.0).contains(&(rung.at - parked.at)),
        "rung back after {:.2} s, not timeout_s = 2",
        rung.at - parked.at
    );
    let dialled = bob.find("INVITE", |m| m.sent && m.is_request("INVITE"));
    let cancel = carol.find("CANCEL", |m| !m.sent && m.is_request("CANCEL"));
    assert!(
        in_order(dialled, cancel),
        "carol was cancelled before bob dialled"
    );
    let notifies: Vec<&SipMessage> = phone
        .received()
        .filter(|m| m.is_request("NOTIFY"))
        .collect();
    assert_eq!(notifies.len(), 6, "{}", phone.report());
    assert_versions(&notifies);
    let states: Vec<&str> = notifies
        .iter()
        .map(|m| {
            let body = m.body_text();
            if body.contains("<state>early</state>") {
                "early"
            } else if body.contains("<state>confirmed</state>") {
                "confirmed"
            } else {
                "free"
            }
        })
        .collect();
    assert_eq!(
        states,
        ["free", "confirmed", "early", "confirmed", "free", "free"]
    );
    let bob_ack = bob.find("ACK", |m| m.sent && m.is_request("ACK"));
    assert!(in_order(bob_ack, notifies[4]), "free before bob's ACK");
    assert_logged(&daemon, &["parked call retrieved", "orbit=701", "Invite"]);
    assert_all_ended(&daemon);
}

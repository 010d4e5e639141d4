//! The client against every tenant dialect (issue 11): the emulator's `--dialect` switches,
//! plus the hostile server for shapes the emulator never sends. Part of `tests/papi.rs`.

use scanmint::domain::secret::Secret;
use scanmint::tenant::emulator::{CLI_READ_ONLY_CUSTOM, Emulator, Faults};
use scanmint::tenant::papi::wire::{Filter, ListRequest, SecurityLevel};
use scanmint::tenant::papi::{
    DeleteOutcome, DeleteReplyShape, ErrorKind, ListCasing, Paging, TimeUnit, ValidateForm,
};
use serde_json::json;

use super::{Fails, assert_kind, gen_req, hostile, hostile_client, http_reply, primary, start};

async fn speaking(dialects: &str) -> Emulator {
    start(super::EmulatorConfig {
        faults: Faults::with_dialects(dialects).unwrap(),
        ..super::unlimited()
    })
    .await
}

fn tagged(tag: &str, expiration: Option<i64>) -> scanmint::tenant::papi::wire::GenerateRequest {
    let mut req = gen_req(&[CLI_READ_ONLY_CUSTOM], expiration);
    req.comment = tag.to_string();
    req
}

#[tokio::test]
async fn delete_accepted_without_a_count_is_not_a_failure() {
    // Before: `{"reply": true}` failed to decode, so logout said the tenant refused the
    // revocation although the key was gone.
    let emu = speaking("delete-reply-true").await;
    let papi = primary(&emu);
    let a = papi.generate(&tagged("a", None)).await.unwrap();
    let b = papi.generate(&tagged("b", None)).await.unwrap();
    assert_eq!(
        papi.delete_keys(&[a.id]).await.unwrap(),
        DeleteOutcome::Accepted
    );
    assert_eq!(papi.delete(&[b.id]).await.unwrap(), 1, "the ids asked for");
    assert_eq!(emu.live_keys().len(), 1, "both deleted");
    assert_eq!(
        papi.observed_dialect().delete_reply,
        Some(DeleteReplyShape::ReplyTrue)
    );

    let counted = start(super::unlimited()).await;
    let papi = primary(&counted);
    let c = papi.generate(&tagged("c", None)).await.unwrap();
    assert_eq!(
        papi.delete_keys(&[c.id, 999_999]).await.unwrap(),
        DeleteOutcome::Count(1)
    );
    assert_eq!(
        papi.observed_dialect().delete_reply,
        Some(DeleteReplyShape::UpdateCount)
    );
}

#[tokio::test]
async fn validate_in_every_dialect_and_the_post_form_is_learned() {
    for dialect in [
        "",
        "validate-string",
        "validate-reply",
        "validate-post",
        "all",
    ] {
        let emu = speaking(dialect).await;
        let papi = primary(&emu);
        assert!(papi.validate().await.unwrap(), "{dialect}");
        let wrong = papi.as_key(
            emu.primary_key_id(),
            Secret::new("nope"),
            SecurityLevel::Standard,
        );
        assert!(!wrong.validate().await.unwrap(), "{dialect}");
        let post = dialect == "validate-post" || dialect == "all";
        let want = if post {
            ValidateForm::Post
        } else {
            ValidateForm::Get
        };
        assert_eq!(papi.observed_dialect().validate, Some(want), "{dialect}");
        // Learned: the next call goes straight to the working form.
        let before = emu.calls().validate;
        assert!(papi.validate().await.unwrap());
        assert_eq!(emu.calls().validate - before, 1, "{dialect}");
    }

    // Shapes the emulator never sends, and a refusal in words.
    for (body, want) in [
        (r#"{"reply":"true"}"#, Some(true)),
        (r#"{"reply":false}"#, Some(false)),
        (r#""false""#, Some(false)),
        (r#"{"reply":{"ok":1}}"#, None),
    ] {
        let h = hostile(vec![http_reply(200, body.as_bytes())]).await;
        let result = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
            .validate()
            .await;
        match want {
            Some(want) => assert_eq!(result.unwrap(), want, "{body}"),
            None => assert_kind(&result.fails(), ErrorKind::Malformed, None),
        }
    }
    // A tenant without either form says so, quoting itself.
    let h = hostile(vec![http_reply(404, br#"{"message":"no route"}"#)]).await;
    let err = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .validate()
        .await
        .fails();
    assert_kind(&err, ErrorKind::Malformed, Some(404));
    assert!(err.message.contains("no route"), "{err}");
    let lines: Vec<String> = h
        .requests()
        .iter()
        .map(|r| r.request_line.clone())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /api_keys/validate HTTP/1.1",
            "POST /api_keys/validate/ HTTP/1.1"
        ]
    );
    assert_eq!(h.requests()[1].body, br#"{"request_data":{}}"#);
}

#[tokio::test]
async fn records_and_list_fields_in_either_casing() {
    let upper = json!({"reply": {"DATA": [{"ID": 7, "ROLES": ["r"], "CREATION_TIME": 1_721_149_909_250i64,
        "EXPIRATION": null, "COMMENT": "c", "SECURITY_LEVEL": "Standard", "USER_NAME": "u"}],
        "TOTAL_COUNT": 1, "FILTER_COUNT": 1}});
    let lower = json!({"data": [{"id": 8, "roles": ["r"], "creation_time": 1_721_149_909i64,
        "expiration": 1_721_150_000i64}], "total_count": 1, "filter_count": 1});
    for (body, id, casing, unit) in [
        (upper, 7, ListCasing::Upper, TimeUnit::Millis),
        (lower, 8, ListCasing::Lower, TimeUnit::Seconds),
    ] {
        let h = hostile(vec![http_reply(200, body.to_string().as_bytes())]).await;
        let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
        let reply = papi.get_api_keys(&ListRequest::default()).await.unwrap();
        assert_eq!(reply.data[0].id, id);
        assert_eq!(reply.data[0].roles, ["r"]);
        assert_eq!(reply.filter_count, 1);
        let seen = papi.observed_dialect();
        assert_eq!(
            (seen.list_casing, seen.time_unit),
            (Some(casing), Some(unit))
        );
    }
}

#[tokio::test]
async fn timestamps_pass_through_in_the_tenants_unit() {
    let emu = speaking("seconds").await;
    let papi = primary(&emu);
    let listing = papi.list_all(vec![]).await.unwrap();
    let created = listing.records[0].creation_time.unwrap();
    assert_eq!(
        TimeUnit::detect(created),
        Some(TimeUnit::Seconds),
        "{created}"
    );
    assert_eq!(
        TimeUnit::from_records(&listing.records),
        Some(TimeUnit::Seconds)
    );
    assert_eq!(papi.observed_dialect().time_unit, Some(TimeUnit::Seconds));

    // Sent in the tenant's unit, the expiry reads back exactly.
    let want_ms = emu.now_ms() + 3_600_000;
    let unit = TimeUnit::Seconds;
    let right = papi
        .generate(&tagged("right", Some(unit.from_ms(want_ms))))
        .await
        .unwrap();
    // Sent in ms, a seconds tenant records an expiry tens of millennia away.
    let wrong = papi
        .generate(&tagged("wrong", Some(want_ms)))
        .await
        .unwrap();
    let records = papi
        .list_all(vec![Filter::ids(&[right.id, wrong.id])])
        .await
        .unwrap()
        .records;
    let expiry = |id| {
        records
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .expiration
            .unwrap()
    };
    assert_eq!(expiry(right.id), unit.from_ms(want_ms));
    assert!(!unit.is_absurd_expiry(expiry(right.id), emu.now_ms()));
    assert_eq!(expiry(wrong.id), want_ms, "kept as sent");
    assert!(unit.is_absurd_expiry(expiry(wrong.id), emu.now_ms()));
    // The expiration filter speaks the tenant's unit too.
    let live = papi
        .list_all(vec![Filter::expiration_gte(unit.from_ms(emu.now_ms()))])
        .await
        .unwrap();
    assert_eq!(
        live.records.len(),
        3,
        "primary (never expires) and both keys"
    );

    // A ms tenant refuses a seconds expiration (January 1970) with a message of its own.
    let ms = start(super::unlimited()).await;
    let err = primary(&ms)
        .generate(&tagged("s", Some(TimeUnit::Seconds.from_ms(want_ms))))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(err.message.contains("in the past"), "{err}");
}

#[tokio::test]
async fn large_inventories_with_and_without_paging() {
    for (dialect, paging, pages) in [
        ("", Paging::Honoured, 3),
        ("ignore-paging", Paging::Ignored, 1),
    ] {
        let emu = speaking(dialect).await;
        for _ in 0..249 {
            emu.create_key(&[CLI_READ_ONLY_CUSTOM], SecurityLevel::Standard, None);
        }
        let papi = primary(&emu);
        let listing = papi.list_all(vec![]).await.unwrap();
        assert_eq!(listing.records.len(), 250, "{dialect}");
        assert_eq!(listing.filter_count, 250);
        assert!(listing.complete, "{dialect}");
        assert_eq!(listing.paging, paging, "{dialect}");
        assert_eq!(listing.pages_read, pages, "{dialect}");
        assert_eq!(listing.duplicates_dropped, 0);
        assert_eq!(papi.observed_dialect().paging, Some(paging));
        // A narrow filter needs one call whatever the inventory.
        let some = papi
            .list_all(vec![Filter::ids(&[emu.primary_key_id()])])
            .await
            .unwrap();
        assert_eq!((some.records.len(), some.pages_read), (1, 1));
    }
}

fn page(ids: std::ops::Range<i64>, filter_count: u64) -> Vec<u8> {
    let data: Vec<_> = ids
        .map(|id| json!({"id": id, "roles": ["r"], "expiration": null, "comment": "c"}))
        .collect();
    let body =
        json!({"reply": {"DATA": data, "TOTAL_COUNT": filter_count, "FILTER_COUNT": filter_count}});
    http_reply(200, body.to_string().as_bytes())
}

#[tokio::test]
async fn a_repeated_page_ends_the_walk_and_says_it_is_incomplete() {
    // Ignores search_from, caps at 100: the same page forever. Before, this was read 50 times.
    let h = hostile(vec![page(1..101, 250)]).await;
    let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    let listing = papi.list_all(vec![]).await.unwrap();
    assert_eq!(h.requests().len(), 2, "stopped at the first repeat");
    assert_eq!(listing.records.len(), 100);
    assert_eq!(listing.duplicates_dropped, 100);
    assert_eq!(listing.paging, Paging::Ignored);
    assert!(!listing.complete, "150 keys were never seen");

    // Overlapping pages: exact copies dropped; FILTER_COUNT ends the walk.
    let h = hostile(vec![page(1..101, 150), page(51..151, 150)]).await;
    let listing = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .list_all(vec![])
        .await
        .unwrap();
    assert_eq!(listing.records.len(), 150);
    assert_eq!(listing.duplicates_dropped, 50);
    assert!(listing.complete);
    assert_eq!(listing.paging, Paging::Honoured);
    assert_eq!(h.requests().len(), 2);
    let froms: Vec<serde_json::Value> = h
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["request_data"]["search_from"].clone())
        .collect();
    assert_eq!(froms, [json!(0), json!(100)]);

    // One id listed two different ways: both kept, so the caller sees the conflict.
    let body = json!({"reply": {"DATA": [
        {"id": 5, "roles": ["CLI Read-Only Custom"], "expiration": null},
        {"id": 5, "roles": ["CLI Read-Only Custom", "Instance Administrator"], "expiration": null},
        {"id": 5, "roles": ["CLI Read-Only Custom"], "expiration": null}],
        "TOTAL_COUNT": 3, "FILTER_COUNT": 3}});
    let h = hostile(vec![http_reply(200, body.to_string().as_bytes())]).await;
    let listing = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .list_all(vec![])
        .await
        .unwrap();
    assert_eq!(listing.records.len(), 2);
    assert_eq!(listing.records[1].roles.len(), 2);
    // Fewer ids than FILTER_COUNT: one more page to be sure, which repeats; then stop.
    assert_eq!(h.requests().len(), 2);
    assert_eq!(listing.duplicates_dropped, 1 + 3);
}

#[tokio::test]
async fn an_uncertain_generate_says_so_and_the_key_landed() {
    for kind in ["503", "drop"] {
        let emu = start(super::EmulatorConfig {
            faults: Faults {
                uncertain_generate: Some(scanmint::tenant::emulator::UncertainGenerate {
                    kind: if kind == "drop" {
                        super::FailureKind::Drop
                    } else {
                        super::FailureKind::Status(503)
                    },
                    remaining: 2,
                }),
                ..Faults::default()
            },
            ..super::unlimited()
        })
        .await;
        let papi = super::primary_with(&emu, super::fast_retry(4));
        for attempt in 0..2 {
            let tag = format!("scanmint test {kind} {attempt}");
            let err = papi.generate(&tagged(&tag, None)).await.fails();
            assert!(err.is_uncertain(), "{kind}: {err}");
            assert!(err.kind.is_transient(), "{kind}: {err}");
            assert!(err.message.contains("may or may not"), "{err}");
            // It landed: findable by its tag.
            assert!(emu.live_keys().iter().any(|k| k.comment == tag), "{kind}");
        }
        assert_eq!(emu.calls().generate, 2, "{kind}: never retried blindly");
        assert!(papi.generate(&tagged("third", None)).await.is_ok());
        assert_eq!(emu.live_keys().len(), 4);
    }

    // Certain failures are not uncertain: a refused connection, a 4xx, other calls.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut opts = super::options(&url, 1, Secret::new("k"), SecurityLevel::Standard);
    opts.retry = scanmint::tenant::papi::RetryPolicy::none();
    let err = scanmint::tenant::papi::Client::new(opts)
        .unwrap()
        .generate(&tagged("x", None))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Transport, None);
    assert!(!err.is_uncertain(), "never connected: {err}");
    let h = hostile(vec![http_reply(
        503,
        b"<html><h1>503 Service Unavailable</h1></html>",
    )])
    .await;
    let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    let err = papi.get_api_keys(&ListRequest::default()).await.fails();
    assert!(!err.is_uncertain(), "only generate is uncertain");
    assert!(
        err.message.contains("503 Service Unavailable"),
        "quotes the page: {err}"
    );
    let h = hostile(vec![http_reply(500, b"")]).await;
    let err = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .generate(&tagged("y", None))
        .await
        .fails();
    assert!(err.is_uncertain(), "an unexplained 500: {err}");
    let h = hostile(vec![http_reply(
        403,
        br#"{"errorCode":"403","message":"no"}"#,
    )])
    .await;
    let err = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .generate(&tagged("z", None))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Forbidden, Some(403));
    assert!(
        !err.is_uncertain() && err.message.ends_with(": no"),
        "{err}"
    );
}

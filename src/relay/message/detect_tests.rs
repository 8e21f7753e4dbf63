use super::*;

#[test]
fn each_service_is_told_by_its_url() {
    let cases = [
        ("https://hooks.slack.com/services/T0/B0/xyz", Format::Blocks),
        ("https://hooks.slack.com/triggers/T0/123/abc", Format::Workflow),
        ("https://hooks.slack.com/workflows/T0/A0/1/x", Format::Workflow),
        (
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t",
            Format::GoogleChat,
        ),
        ("https://discord.com/api/webhooks/1/tok", Format::Discord),
        ("https://discordapp.com/api/webhooks/1/tok", Format::Discord),
        (
            "https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x",
            Format::Teams,
        ),
        (
            "https://default1.environment.api.powerplatform.com/powerautomate/x",
            Format::Teams,
        ),
        (
            "https://api.telegram.org/bot123:ABC/sendMessage?chat_id=42",
            Format::Telegram,
        ),
        ("telegram://123:ABC@42", Format::Telegram),
        ("https://ntfy.sh/gpu-alerts", Format::Ntfy),
        (
            "https://events.pagerduty.com/v2/enqueue?routing_key=R",
            Format::Pagerduty,
        ),
        ("pagerduty://R0UT1NG", Format::Pagerduty),
        // Stand-ins on loopback: the path decides.
        ("http://127.0.0.1:9/services/T/B/x", Format::Blocks),
        ("http://127.0.0.1:9/api/webhooks/1/t", Format::Discord),
        ("http://127.0.0.1:9/bot1:A/sendMessage?chat_id=1", Format::Telegram),
        ("http://127.0.0.1:9/v2/enqueue?routing_key=R", Format::Pagerduty),
    ];
    for (url, want) in cases {
        assert_eq!(detect(url), Some(want), "{url}");
        assert_eq!(check(url, None).unwrap().0, want, "{url}");
    }
    for unknown in [
        "https://example.com/hook",
        "https://discord.com/channels/1/2",
        "https://ntfy.sh/",
        "http://127.0.0.1:9/hook",
    ] {
        assert_eq!(detect(unknown), None, "{unknown}");
    }
}

#[test]
fn an_unknown_url_is_refused_with_the_list_of_kinds_unless_its_kind_is_given() {
    let e = check("https://ntfy.example.com/alerts", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ntfy.example.com") && e.contains("--format KIND"),
        "{e}"
    );
    for f in Format::ALL {
        assert!(e.contains(f.name()), "{e}");
    }
    assert!(!e.contains("/alerts"), "the URL's path is a secret: {e}");
    let (f, w) = check("https://ntfy.example.com/alerts", Some(Format::Ntfy)).unwrap();
    assert_eq!((f, w), (Format::Ntfy, None));
    // A kind that contradicts the URL is kept, with a warning.
    let (f, w) = check("https://discord.com/api/webhooks/1/t", Some(Format::Ntfy)).unwrap();
    assert_eq!(f, Format::Ntfy);
    assert!(w.unwrap().contains("Discord"));
    // Slack's own three shapes on one URL are no contradiction.
    let (_, w) = check("https://hooks.slack.com/services/T/B/X", Some(Format::Text)).unwrap();
    assert_eq!(w, None);
}

#[test]
fn broken_urls_say_what_to_do_and_never_echo_the_secret() {
    for (url, kind, want) in [
        (
            "https://hooks.slack.com/services/T/B",
            None,
            "copy it again from Slack",
        ),
        (
            "https://hooks.slack.com/other/T/B/X",
            None,
            "copy it again from Slack",
        ),
        ("http://example.com/services/x", None, "https://"),
        ("not-a-url", None, "not a valid URL"),
        (
            "https://hooks.slack.com/services/T/B/SECRET more",
            None,
            "give the URL alone",
        ),
        (
            "https://api.telegram.org/botSECRET/sendMessage",
            None,
            "chat_id",
        ),
        ("telegram://@42", None, "telegram://BOT_TOKEN@CHAT_ID"),
        (
            "https://events.pagerduty.com/v2/enqueue",
            None,
            "routing_key",
        ),
        (
            "https://x.webhook.office.com/webhookb2/SECRET",
            None,
            "Workflows",
        ),
        ("pagerduty://KEY", Some(Format::Discord), "https://"),
    ] {
        let e = check(url, kind).unwrap_err().to_string();
        assert!(e.contains(want), "{url}: {e}");
        assert!(!e.contains("SECRET"), "{url}: {e}");
    }
    let (_, w) = check("http://127.0.0.1:9/services/T/B/X", None).unwrap();
    assert!(w.unwrap().contains("testing only"));
}

#[test]
fn chats_and_keys_move_from_the_url_into_the_body() {
    let e = endpoint(Format::Telegram, &Secret::new("telegram://123:ABC-d@-1001")).unwrap();
    assert_eq!(
        e.url.expose(),
        "https://api.telegram.org/bot123:ABC-d/sendMessage"
    );
    assert_eq!(e.fields, vec![("chat_id", "-1001".to_owned())]);
    let e = endpoint(
        Format::Telegram,
        &Secret::new("http://127.0.0.1:9/bot1:A/sendMessage?chat_id=%40chan&x=1"),
    )
    .unwrap();
    assert_eq!(e.url.expose(), "http://127.0.0.1:9/bot1:A/sendMessage?x=1");
    assert_eq!(e.fields, vec![("chat_id", "@chan".to_owned())]);
    let e = endpoint(Format::Pagerduty, &Secret::new("pagerduty://KEY1")).unwrap();
    assert_eq!(e.url.expose(), "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(e.fields, vec![("routing_key", "KEY1".to_owned())]);
    let e = endpoint(
        Format::Pagerduty,
        &Secret::new("https://events.pagerduty.com/v2/enqueue?routing_key=K"),
    )
    .unwrap();
    assert_eq!(e.url.expose(), "https://events.pagerduty.com/v2/enqueue");
    let e = endpoint(
        Format::Discord,
        &Secret::new("https://discord.com/api/webhooks/1/t"),
    )
    .unwrap();
    assert!(e.fields.is_empty());
    assert_eq!(
        crate::relay::deliver::host_of("telegram://1:A@2"),
        "api.telegram.org"
    );
    assert_eq!(
        crate::relay::deliver::host_of("pagerduty://K"),
        "events.pagerduty.com"
    );
}

//! Chat in the web client, in real Chromium: messages, history for a late joiner, private messages, a file shared
//! and downloaded byte for byte through the page's link, a poll, a host's deletion, and user text (a name and
//! a message full of HTML) shown as text that runs nothing.

use super::*;

/// A real 1x1 PNG (so the page's preview decodes) followed by deterministic noise, which image decoders ignore
/// after the IEND chunk: a large file the server types from its first bytes.
fn png_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0xb5, 0x1c, 0x0c, 0x02, 0x00, 0x00, 0x00,
        0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x30, 0x81,
        0xd0, 0x2f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let mut x: u32 = 0x1234_5678;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push(x as u8);
    }
    data
}

/// The texts of the chat messages a page shows.
async fn chat_bodies(browser: &Browser) -> Vec<String> {
    let v = browser
        .eval("return [...document.querySelectorAll('#chat-messages li.chat-message .chat-body')].map((b) => b.textContent)")
        .await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

async fn wait_joined(browser: &Browser, who: &str) {
    wait_true(browser, &format!("{who} joined"), "return !!(window.sluiceApp && window.sluiceApp.selfId)").await;
}

/// Opens the chat panel and sends `text` to `to` ("" for everyone).
async fn send_chat(browser: &Browser, text: &str, to: &str) {
    let script = format!(
        "if (document.getElementById('chat').hidden) document.getElementById('chat-toggle').click(); \
         document.getElementById('chat-to').value = {to}; \
         document.getElementById('chat-input').value = {text}; \
         document.getElementById('chat-send').click(); return true;",
        to = json!(to),
        text = json!(text),
    );
    browser.eval(&script).await;
}

const HTML_TEXT: &str = "<b>bold</b><img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";
const HTML_NAME: &str = "<img src=x onerror=window.pwned=3>";

#[test]
fn chat_files_and_polls_in_the_web_client_show_user_text_as_text() {
    in_fresh_netns("chat::chat_files_and_polls_in_the_web_client_show_user_text_as_text", async || {
        let dir = tempfile::tempdir().unwrap();
        let (_server, base) = start_server_with(dir.path(), &[]);
        let (_chromedriver, driver) = start_chromedriver().await;
        let (id, host_token) = create_meeting(&base, "Hana").await;
        let hana = Browser::launch(&driver).await;
        hana.goto(&format!("{base}/m/{id}?name=Hana#token={host_token}")).await;
        let ann = Browser::launch(&driver).await;
        let encoded: String = HTML_NAME.bytes().map(|b| format!("%{b:02X}")).collect();
        ann.goto(&format!("{base}/m/{id}?name={encoded}")).await;
        let bob = Browser::launch(&driver).await;
        bob.goto(&format!("{base}/m/{id}?name=Bob")).await;
        for (b, who) in [(&hana, "Hana"), (&ann, "Ann"), (&bob, "Bob")] {
            wait_joined(b, who).await;
        }
        let bob_id = participant_id(&bob).await;

        // P1 says something full of HTML; P2 sees it, as text, with an unread badge while the panel is closed.
        send_chat(&ann, HTML_TEXT, "").await;
        wait_true(
            &bob,
            "Bob sees Ann's message",
            &format!(
                "return [...document.querySelectorAll('#chat-messages .chat-body')].some((b) => b.textContent === {})",
                json!(HTML_TEXT)
            ),
        )
        .await;
        assert_eq!(bob.eval("return document.getElementById('chat-unread').textContent").await, "1");
        let markup = "return document.querySelectorAll('#chat-messages li.chat-message b, #chat-messages li.chat-message script, \
                      #chat-messages li.chat-message img:not(.chat-preview)').length";
        assert_eq!(bob.eval(markup).await, 0, "no element was made from the message");
        let from =
            bob.eval("return document.querySelector('#chat-messages li.chat-message .chat-from').textContent").await;
        assert!(from.as_str().unwrap().contains(HTML_NAME), "the name is shown literally: {from}");

        // A private message reaches Bob, not Hana; then a public one.
        send_chat(&ann, "for Bob only", &bob_id).await;
        wait_true(&bob, "Bob gets the private message", "return [...document.querySelectorAll('#chat-messages .chat-body')].some((b) => b.textContent === 'for Bob only')").await;
        send_chat(&ann, "after the private one", "").await;
        wait_true(&hana, "Hana gets the public one", "return [...document.querySelectorAll('#chat-messages .chat-body')].some((b) => b.textContent === 'after the private one')").await;
        assert!(
            !chat_bodies(&hana).await.contains(&"for Bob only".to_string()),
            "a host does not see private messages"
        );

        // P3 joins later: the history, without the private message, in the page and through the API.
        let cy = Browser::launch(&driver).await;
        cy.goto(&format!("{base}/m/{id}?name=Cy")).await;
        wait_joined(&cy, "Cy").await;
        wait_true(
            &cy,
            "Cy has the history",
            "return document.querySelectorAll('#chat-messages li.chat-message').length >= 2",
        )
        .await;
        assert_eq!(chat_bodies(&cy).await, [HTML_TEXT, "after the private one"]);
        let cy_token = cy.eval("return window.sluiceApp.client.token").await.as_str().unwrap().to_string();
        let page: Value = reqwest::Client::new()
            .get(format!("{base}/meetings/{id}/chat"))
            .bearer_auth(&cy_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed: Vec<&str> =
            page["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
        assert_eq!(listed, [HTML_TEXT, "after the private one"]);

        // P1 shares a file from the page; P2 downloads it through the page's link, byte for byte.
        let data = png_bytes(300 * 1024);
        let b64 = base64(&data);
        let shared = ann
            .eval(&format!(
                "const bytes = Uint8Array.from(atob('{b64}'), (c) => c.charCodeAt(0)); \
                 const dt = new DataTransfer(); dt.items.add(new File([bytes], 'photo.png', {{type: 'text/html'}})); \
                 const input = document.getElementById('chat-file'); input.files = dt.files; \
                 input.dispatchEvent(new Event('change')); return true;"
            ))
            .await;
        assert_eq!(shared, true);
        wait_true(
            &bob,
            "Bob gets the file's link",
            "const a = document.querySelector('#chat-messages a.chat-file'); return !!a && a.href.includes('/files/')",
        )
        .await;
        let href = bob.eval("return document.querySelector('#chat-messages a.chat-file').href").await;
        let got = reqwest::get(href.as_str().unwrap()).await.unwrap();
        assert_eq!(got.headers()["content-type"], "image/png", "typed from the bytes, not the browser's claim");
        assert!(got.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice(), "the same bytes");
        wait_true(&bob, "Bob sees the preview", "const i = document.querySelector('#chat-messages img.chat-preview'); return !!i && i.complete && i.naturalWidth === 1 && i.src.includes('d=inline')").await;

        // A poll: the host asks, two vote, the host sees the counts and closes it; everyone sees the result.
        hana.eval(
            "document.getElementById('chat').hidden && document.getElementById('chat-toggle').click(); \
             document.getElementById('poll-new').click(); \
             document.getElementById('poll-question').value = 'Lunch?'; \
             const opts = document.querySelectorAll('#poll-options input.poll-option-input'); \
             opts[0].value = 'pizza'; opts[1].value = 'sushi'; \
             document.getElementById('poll-create').click(); return true;",
        )
        .await;
        let vote = |index: u32| {
            format!(
                "const b = document.querySelector('#poll-list .poll button.poll-option[data-index=\"{index}\"]'); if (!b) return false; b.click(); return true;"
            )
        };
        wait_true(&ann, "Ann votes", &vote(1)).await;
        wait_true(&bob, "Bob votes", &vote(1)).await;
        wait_true(&hana, "Hana sees two votes for sushi", "const c = document.querySelectorAll('#poll-list .poll button.poll-option[data-index=\"1\"] .poll-count'); return c.length === 1 && c[0].textContent.includes('2')").await;
        wait_true(&hana, "Hana closes the poll", "const b = document.querySelector('#poll-list .poll button.poll-close'); if (!b) return false; b.click(); return true;").await;
        wait_true(&cy, "Cy sees it closed with its counts", "const p = document.querySelector('#poll-list .poll.closed'); return !!p && p.querySelector('button.poll-option[data-index=\"1\"] .poll-count').textContent.includes('2')").await;

        // The host deletes Ann's first message: it leaves every page.
        wait_true(&hana, "Hana deletes it", &format!(
            "const li = [...document.querySelectorAll('#chat-messages li.chat-message')].find((l) => l.querySelector('.chat-body').textContent === {}); \
             if (!li) return false; li.querySelector('button.chat-delete').click(); return true;",
            json!(HTML_TEXT)
        ))
        .await;
        for (b, who) in [(&bob, "Bob"), (&cy, "Cy"), (&ann, "Ann")] {
            wait_true(b, &format!("{who} no longer shows it"), &format!(
                "return ![...document.querySelectorAll('#chat-messages .chat-body')].some((b) => b.textContent === {})",
                json!(HTML_TEXT)
            ))
            .await;
        }
        for (b, who) in [(&hana, "Hana"), (&ann, "Ann"), (&bob, "Bob"), (&cy, "Cy")] {
            assert_eq!(
                b.eval("return window.pwned === undefined").await,
                true,
                "{who}'s page ran script from user text"
            );
        }
        for b in [hana, ann, bob, cy] {
            b.close().await;
        }
    });
}

fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let n = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

//! The web console, driven like a browser with JavaScript off: plain HTTP requests that
//! keep cookies and post forms with the page's CSRF token. What a real browser adds
//! (Chromium, axe-core, screenshots) is in `browser.rs`.
//!
//! Each file covers one part of the console and, next to what a person does, what an
//! attacker would try: another site's form, a member reaching for an admin's page, text
//! an agent wrote landing in a page.

mod access;
mod account;
mod agents;
mod browser;
mod credentials;
mod people;
mod plugins;
mod proposals;
mod request_log;
mod services;
mod sign_in;
mod users;
mod vault_settings;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::Server;

/// A browser's cookies and the last page's CSRF token, against one server.
pub struct Web {
    address: String,
    cookies: BTreeMap<String, String>,
    csrf: Option<String>,
}

/// A page (or redirect) the server answered.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    /// The first value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(found, _)| found == name)
            .map(|(_, value)| value.as_str())
    }

    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("not a redirect: {} {}", self.status, self.text()))
    }

    /// The page's text without its tags, whitespace folded: what a person reads.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let mut in_tag = false;
        for c in self.body.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    text.push(' ');
                }
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        // askama writes the escaped characters as numeric references; the approval page
        // writes named ones. `&amp;` last, so that an escaped `&` is not read twice.
        let text = decode_numeric_entities(
            &text
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#x27;", "'"),
        )
        .replace("&amp;", "&");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Whether a person reads `words` on the page.
    pub fn shows(&self, words: &str) -> bool {
        self.text().contains(words)
    }

    /// The value of the first `name="csrf"` field on the page.
    fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let end = self.body[at..].find('"')?;
        Some(self.body[at..at + end].to_owned())
    }
}

/// `&#60;` and the like (askama escapes with decimal entities) as their characters.
fn decode_numeric_entities(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("&#") {
        decoded.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let digits = after.find(';').map(|end| &after[..end]);
        match digits.and_then(|digits| Some((digits, char::from_u32(digits.parse().ok()?)?))) {
            Some((digits, c)) => {
                decoded.push(c);
                rest = &after[digits.len() + 1..];
            }
            None => {
                decoded.push_str("&#");
                rest = after;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

impl Web {
    /// A browser with no cookies yet.
    pub fn new(server: &Server) -> Web {
        Web {
            address: server.url().trim_start_matches("http://").to_owned(),
            cookies: BTreeMap::new(),
            csrf: None,
        }
    }

    /// A browser that registered the first owner on the register page.
    pub fn register_owner(server: &Server, email: &str, password: &str) -> Web {
        let mut web = Web::new(server);
        let done = web.post_plain(
            "/register",
            &[
                ("email", email),
                ("password", password),
                ("confirm", password),
            ],
        );
        assert_eq!(done.status, 303, "{}", done.text());
        web
    }

    /// A browser signed in on the sign-in page.
    pub fn sign_in(server: &Server, email: &str, password: &str) -> Web {
        let mut web = Web::new(server);
        let done = web.post_plain("/login", &[("email", email), ("password", password)]);
        assert_eq!(done.status, 303, "{}", done.text());
        web
    }

    /// The value of a cookie the server set.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Open a page (no redirect followed); its CSRF token is kept for the next post.
    pub fn get(&mut self, path: &str) -> Page {
        let page = self.send("GET", path, None, &[]);
        if let Some(csrf) = page.csrf() {
            self.csrf = Some(csrf);
        }
        page
    }

    /// Submit a form from the last page opened (its CSRF token added), and follow the
    /// redirect if it answers with one.
    pub fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self
            .csrf
            .clone()
            .expect("open a page with a form before submitting one");
        let mut with_csrf = vec![("csrf", csrf.as_str())];
        with_csrf.extend_from_slice(fields);
        let answer = self.post_plain(path, &with_csrf);
        self.follow(answer)
    }

    /// After a redirect, the page it leads to.
    pub fn follow(&mut self, answer: Page) -> Page {
        if answer.status == 303 {
            let location = answer.location().to_owned();
            self.get(&location)
        } else {
            answer
        }
    }

    /// Post a form exactly as given, as a page of this site would (no CSRF field added).
    pub fn post_plain(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = format!("http://{}", self.address);
        self.post_with(path, fields, &[("Origin", &origin)])
    }

    /// Post a form with extra request headers (say another site's `Origin`).
    pub fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = headers.to_vec();
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        self.send("POST", path, Some(&body), &headers)
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.address
        );
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.unwrap_or_default();
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        for (_, cookie) in headers.iter().filter(|(name, _)| name == "set-cookie") {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || cookie.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Page {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

/// A form field for `application/x-www-form-urlencoded`.
fn encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

//! The SOAP envelope layer shared by every SOAP surface: a bounded, DTD-free parse of the
//! envelope into a small element tree, and answers (responses and faults) in the caller's SOAP
//! version. Any namespace prefixes are accepted; elements are matched by local name and
//! namespace.
//!
//! Hostile input is bounded: no DOCTYPE (so no entity definitions, no external entities, no
//! billion laughs), only the five predefined entities and character references, a depth limit,
//! and an element-count limit. Text borrows from the body where it can (base64 documents are
//! not copied).

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Deepest element nesting accepted (a GoSign notification needs about 7).
const MAX_DEPTH: usize = 32;
/// Most elements in one envelope.
const MAX_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

/// An XML element: local name, namespace, attributes (local name → value), text and children.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element<'a> {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: Cow<'a, str>,
    pub children: Vec<Element<'a>>,
}

impl<'a> Element<'a> {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Element<'a>> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child with this local name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed SOAP request: its version and the first element of its Body (the operation).
#[derive(Debug)]
pub struct SoapRequest<'a> {
    pub version: SoapVersion,
    pub operation: Element<'a>,
}

/// Why an envelope was refused: a Client (Sender) fault with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

fn err(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError(msg.into())
}

/// Parses a SOAP 1.1 or 1.2 envelope.
pub fn parse(body: &[u8]) -> Result<SoapRequest<'_>, EnvelopeError> {
    let root = parse_tree(body)?;
    let version = match (root.name.as_str(), root.ns.as_deref()) {
        ("Envelope", Some(SOAP11_NS)) => SoapVersion::V11,
        ("Envelope", Some(SOAP12_NS)) => SoapVersion::V12,
        _ => return Err(err("not a SOAP envelope (expected soap:Envelope)")),
    };
    let envelope_ns = root.ns.clone();
    let mut root = root;
    let body = root
        .children
        .drain(..)
        .find(|c| c.name == "Body" && c.ns == envelope_ns)
        .ok_or_else(|| err("SOAP envelope without Body"))?;
    let operation = body
        .children
        .into_iter()
        .next()
        .ok_or_else(|| err("SOAP Body is empty"))?;
    Ok(SoapRequest { version, operation })
}

/// Parses a whole document into an element tree, within the bounds above.
pub fn parse_tree(body: &[u8]) -> Result<Element<'_>, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|_| err("body is not UTF-8"))?;
    let mut reader = NsReader::from_str(text);
    let cfg = reader.config_mut();
    cfg.trim_text(false);
    cfg.expand_empty_elements = true;
    // GoSign's own example has a mismatched end tag; elements close by position.
    cfg.check_end_names = false;
    let mut stack: Vec<Element<'_>> = Vec::new();
    let mut root: Option<Element<'_>> = None;
    let mut elements = 0usize;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| err(format!("malformed XML near byte {position}: {}", short(&e))))?;
        match event {
            Event::Start(start) => {
                elements += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(err("XML nested too deeply"));
                }
                if elements > MAX_ELEMENTS {
                    return Err(err("too many XML elements"));
                }
                if root.is_some() {
                    return Err(err("content after the document element"));
                }
                let ns = match ns {
                    ResolveResult::Bound(n) => {
                        Some(String::from_utf8_lossy(n.as_ref()).into_owned())
                    }
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(err(format!(
                            "undeclared namespace prefix {}",
                            String::from_utf8_lossy(&p)
                        )))
                    }
                };
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|_| err("malformed attribute"))?;
                    let key = a.key.local_name();
                    let key = String::from_utf8_lossy(key.as_ref()).into_owned();
                    if a.key.as_ref().starts_with(b"xmlns") {
                        continue;
                    }
                    let value = a
                        .unescape_value()
                        .map_err(|_| err("attribute with an unknown entity"))?
                        .into_owned();
                    attrs.push((key, value));
                }
                stack.push(Element {
                    ns,
                    name,
                    attrs,
                    text: Cow::Borrowed(""),
                    children: Vec::new(),
                });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| err("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|_| err("undecodable text"))?;
                append_text(&mut stack, s)?;
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|_| err("undecodable CDATA"))?;
                append_text(&mut stack, s)?;
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.decode().map_err(|_| err("bad entity"))?.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => return Err(err("undefined entity reference")),
                    },
                    Err(_) => return Err(err("invalid character reference")),
                };
                append_text(&mut stack, Cow::Owned(ch.to_string()))?;
            }
            Event::DocType(_) => return Err(err("DOCTYPE is not allowed in SOAP messages")),
            Event::PI(_) => return Err(err("processing instructions are not allowed")),
            Event::Decl(_) | Event::Comment(_) => {}
            Event::Empty(_) => unreachable!("empty elements are expanded"),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err("truncated XML"));
    }
    root.ok_or_else(|| err("no XML document element"))
}

fn append_text<'a>(stack: &mut [Element<'a>], s: Cow<'a, str>) -> Result<(), EnvelopeError> {
    match stack.last_mut() {
        Some(el) => {
            if el.text.is_empty() {
                el.text = s;
            } else {
                el.text.to_mut().push_str(&s);
            }
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(err("text outside the document element")),
    }
}

/// Parser errors quote no input; keep only their kind.
fn short(e: &quick_xml::Error) -> String {
    let s = e.to_string();
    s.split(':').next().unwrap_or("syntax error").to_string()
}

/// Escapes text for XML element content and attributes.
pub fn escape(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// A SOAP response whose Body holds `body_xml`.
pub fn respond(version: SoapVersion, body_xml: &str) -> HttpResponse {
    let (ns, ct) = match version {
        SoapVersion::V11 => (SOAP11_NS, "text/xml; charset=utf-8"),
        SoapVersion::V12 => (SOAP12_NS, "application/soap+xml; charset=utf-8"),
    };
    HttpResponse::Ok().content_type(ct).body(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{ns}"><soap:Body>{body_xml}</soap:Body></soap:Envelope>"#
    ))
}

/// Who is at fault: the caller (Client / Sender) or signrelay (Server / Receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    Client,
    Server,
}

/// A SOAP Fault (HTTP 500 as SOAP requires; 401 for authentication).
pub fn fault(
    version: SoapVersion,
    code: FaultCode,
    reason: &str,
    status: StatusCode,
) -> HttpResponse {
    let reason = escape(reason);
    let (ct, body) = match version {
        SoapVersion::V11 => (
            "text/xml; charset=utf-8",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body><soap:Fault><faultcode>soap:{}</faultcode><faultstring>{reason}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#,
                match code {
                    FaultCode::Client => "Client",
                    FaultCode::Server => "Server",
                }
            ),
        ),
        SoapVersion::V12 => (
            "application/soap+xml; charset=utf-8",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><env:Fault><env:Code><env:Value>env:{}</env:Value></env:Code><env:Reason><env:Text xml:lang="en">{reason}</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#,
                match code {
                    FaultCode::Client => "Sender",
                    FaultCode::Server => "Receiver",
                }
            ),
        ),
    };
    HttpResponse::build(status).content_type(ct).body(body)
}

/// A fault with the HTTP status SOAP prescribes: 500 for every SOAP 1.1 fault and for a 1.2
/// Receiver fault, 400 for a 1.2 Sender fault.
pub fn fault_for(version: SoapVersion, code: FaultCode, reason: &str) -> HttpResponse {
    let status = match (version, code) {
        (SoapVersion::V12, FaultCode::Client) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fault(version, code, reason, status)
}

/// The SOAP version a request declares by content type, for answering before the body is
/// parsed (e.g. an authentication fault).
pub fn version_from_content_type(ct: Option<&str>) -> SoapVersion {
    match ct {
        Some(ct) if ct.to_ascii_lowercase().starts_with("application/soap+xml") => SoapVersion::V12,
        _ => SoapVersion::V11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_prefix_and_both_versions() {
        let v11 = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Header/><e:Body><x:op xmlns:x="urn:x"><a>1 &amp; 2</a></x:op></e:Body></e:Envelope>"#;
        let r = parse(v11).unwrap();
        assert_eq!(r.version, SoapVersion::V11);
        assert_eq!(r.operation.name, "op");
        assert_eq!(r.operation.ns.as_deref(), Some("urn:x"));
        assert_eq!(r.operation.child_text("a"), Some("1 & 2"));
        let v12 = br#"<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body><op/></Body></Envelope>"#;
        assert_eq!(parse(v12).unwrap().version, SoapVersion::V12);
    }

    #[test]
    fn refuses_doctype_entities_and_depth() {
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#;
        assert!(parse_tree(xxe).unwrap_err().0.contains("DOCTYPE"));
        let undefined = br#"<x>&e;</x>"#;
        assert!(parse_tree(undefined).is_err());
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse_tree(deep.as_bytes())
            .unwrap_err()
            .0
            .contains("deeply"));
        assert!(parse_tree(b"<a><b></a>").is_err());
        assert!(parse_tree(b"<a>").is_err());
        assert!(parse_tree(b"\xff\xfe<a/>").is_err());
    }

    #[test]
    fn base64_text_is_borrowed() {
        let xml = b"<a><data>QUJD</data></a>";
        let t = parse_tree(xml).unwrap();
        assert!(matches!(t.child("data").unwrap().text, Cow::Borrowed(_)));
    }
}

//! GoSign callback payloads as GoSign sends them (ch. 7 and 8), for the demo and the benchmarks.

/// A REST WorkNotification (ch. 8.3.1) with one finished step; optionally a note and one
/// inline PDF (`document_b64`).
pub fn work_notification(
    envelope: &str,
    kind: &str,
    note: Option<&str>,
    document_b64: Option<&str>,
) -> String {
    let mut v = serde_json::json!({
        "envelopeExternalId": envelope,
        "notificationType": kind,
        "liveStatus": [{"mgrName": "Jan", "mgrSurname": "Jansen", "status": "WKD", "startedAt": "2026-11-23T09:00:00Z", "endedAt": "2026-11-23T09:05:00Z", "stepNumber": 1, "actionResume": {"actions": 1, "signActions": 1, "signedActions": 1}}]
    });
    if let Some(n) = note {
        v["note"] = serde_json::json!(n);
    }
    if let Some(d) = document_b64 {
        v["documents"] = serde_json::json!([{"docExternalId": "DOC-1", "content": {"mimeType": "application/pdf", "data": d}}]);
    }
    v.to_string()
}

/// A SOAP 1.1 workNotification (ch. 7.1); optionally with one inline PDF (`document_b64`).
pub fn soap_work_notification(envelope: &str, kind: &str, document_b64: Option<&str>) -> String {
    let documents = document_b64
        .map(|d| {
            format!(
                "<documents><document><docExternalId>DOC-1</docExternalId><content>\
                 <mimeType>application/pdf</mimeType><data>{d}</data></content></document></documents>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wk="http://www.infocert.it/smartsign/schema/wknotif">
  <soapenv:Body>
    <wk:workNotification>
      <envelopeExternalId>{envelope}</envelopeExternalId>
      <notificationType>{kind}</notificationType>
      <liveStatus>
        <stepEvent>
          <mgrName>Jan</mgrName><mgrSurname>Jansen</mgrSurname><status>WKD</status>
          <startedAt>2026-11-23T09:00:00Z</startedAt><endedAt>2026-11-23T09:05:00Z</endedAt>
          <stepNumber>1</stepNumber>
        </stepEvent>
      </liveStatus>{documents}
    </wk:workNotification>
  </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// A SOAP getEnvelopeExternalStatus request (ch. 7.2) for user `jjansen`.
pub fn soap_status_request(envelopes: &[impl AsRef<str>]) -> String {
    let list: String = envelopes
        .iter()
        .map(|e| format!("<envelopeExtIdList>{}</envelopeExtIdList>", e.as_ref()))
        .collect();
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:getEnvelopeExternalStatusRequest xmlns:ns2="http://www.infocert.it/smartsign/schema/wknotif"><userExtId>jjansen</userExtId>{list}</ns2:getEnvelopeExternalStatusRequest></soap:Body></soap:Envelope>"#
    )
}

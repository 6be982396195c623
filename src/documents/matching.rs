//! Which signed file is the signed version of which of the trigger's `documenten`. The rules
//! are explicit and never guess; for each document, the first rule that applies:
//! 1. **id** — a file whose vendor id is the document's `uuid` or `url` (the case application
//!    gave the vendor the DRC document's uuid as its document id);
//! 2. **name** — a file whose name is the document's `bestandsnaam`, extensions ignored (a
//!    `.docx` comes back signed as `.pdf`), letter case ignored;
//! 3. **order** — when the vendor keeps the order and has exactly as many signed files as
//!    there are documents: the file in the document's place.
//!
//! More than one file for a document by one rule, one file for two documents, or no file at
//! all, is an error that names the document: the step is dead-lettered rather than upload the
//! wrong file.

use crate::registry::Document;

use super::source::SignedFile;

/// For each document, the index of its signed file in `files`.
pub fn match_files(
    documents: &[Document],
    files: &[&SignedFile],
    ordered: bool,
) -> Result<Vec<usize>, String> {
    let by_order = ordered && files.len() == documents.len();
    let mut chosen = Vec::with_capacity(documents.len());
    for (i, doc) in documents.iter().enumerate() {
        let by_id: Vec<usize> = positions(files, |f| {
            f.vendor_id.as_deref().is_some_and(|id| {
                let id = id.trim();
                id.eq_ignore_ascii_case(&doc.uuid) || id == doc.url
            })
        });
        let by_name: Vec<usize> = match doc.bestandsnaam.as_deref() {
            Some(want) => positions(files, |f| {
                f.name.as_deref().is_some_and(|n| same_stem(n, want))
            }),
            None => Vec::new(),
        };
        let pick = match (by_id.as_slice(), by_name.as_slice()) {
            ([one], _) => *one,
            ([], [one]) => *one,
            ([_, _, ..], _) => {
                return Err(format!(
                    "documenten[{i}] ({}): {} ondertekende bestanden met hetzelfde document-id",
                    doc.uuid,
                    by_id.len()
                ))
            }
            ([], [_, _, ..]) => {
                return Err(format!(
                    "documenten[{i}] ({}): {} ondertekende bestanden met dezelfde bestandsnaam",
                    doc.uuid,
                    by_name.len()
                ))
            }
            ([], []) if by_order => i,
            ([], []) => {
                return Err(format!(
                    "documenten[{i}] ({}): geen ondertekend bestand gevonden (niet op document-id, \
                     bestandsnaam of volgorde; {} ondertekende bestanden ontvangen)",
                    doc.uuid,
                    files.len()
                ))
            }
        };
        if let Some(j) = chosen.iter().position(|c| *c == pick) {
            return Err(format!(
                "documenten[{j}] en documenten[{i}] wijzen naar hetzelfde ondertekende bestand"
            ));
        }
        chosen.push(pick);
    }
    Ok(chosen)
}

fn positions(files: &[&SignedFile], pred: impl Fn(&SignedFile) -> bool) -> Vec<usize> {
    files
        .iter()
        .enumerate()
        .filter(|(_, f)| pred(f))
        .map(|(i, _)| i)
        .collect()
}

/// The same name apart from the extension and letter case.
fn same_stem(a: &str, b: &str) -> bool {
    let stem = |s: &str| {
        let base = s.rsplit(['/', '\\']).next().unwrap_or(s).trim();
        match base.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_lowercase(),
            _ => base.to_lowercase(),
        }
    };
    stem(a) == stem(b)
}

/// `name` with its extension changed to `.pdf` (the signing pattern asks for it).
pub fn pdf_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => format!("{stem}.pdf"),
        _ => format!("{name}.pdf"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::source::Role;

    fn doc(uuid: &str, name: Option<&str>) -> Document {
        Document {
            uuid: uuid.into(),
            url: format!("https://drc.example/enkelvoudiginformatieobjecten/{uuid}"),
            titel: None,
            versie: Some(1),
            bestandsnaam: name.map(str::to_string),
        }
    }

    fn file(id: Option<&str>, name: Option<&str>) -> SignedFile {
        SignedFile {
            role: Role::Document,
            vendor_id: id.map(str::to_string),
            name: name.map(str::to_string),
            mime_type: None,
            file: "0.bin".into(),
            size: 1,
            sha256: String::new(),
        }
    }

    #[test]
    fn id_then_name_then_order() {
        let docs = [
            doc("a1", Some("besluit.docx")),
            doc("b2", Some("bijlage.docx")),
        ];
        let files = [
            file(None, Some("Bijlage.pdf")),
            file(Some("A1"), Some("x.pdf")),
        ];
        let refs: Vec<&SignedFile> = files.iter().collect();
        assert_eq!(match_files(&docs, &refs, false), Ok(vec![1, 0]));
        let anonymous = [file(None, None), file(None, None)];
        let refs: Vec<&SignedFile> = anonymous.iter().collect();
        assert_eq!(match_files(&docs, &refs, true), Ok(vec![0, 1]));
        let err = match_files(&docs, &refs, false).unwrap_err();
        assert!(
            err.contains("documenten[0] (a1): geen ondertekend bestand"),
            "{err}"
        );
    }

    #[test]
    fn ambiguity_and_a_shared_file_are_refused() {
        let docs = [doc("a1", Some("besluit.docx"))];
        let two = [
            file(None, Some("besluit.pdf")),
            file(None, Some("BESLUIT.PDF")),
        ];
        let refs: Vec<&SignedFile> = two.iter().collect();
        assert!(match_files(&docs, &refs, true)
            .unwrap_err()
            .contains("dezelfde bestandsnaam"));
        let docs = [doc("a1", Some("x.docx")), doc("b2", Some("x.odt"))];
        let one = [file(None, Some("x.pdf")), file(None, Some("y.pdf"))];
        let refs: Vec<&SignedFile> = one.iter().collect();
        assert!(match_files(&docs, &refs, true)
            .unwrap_err()
            .contains("hetzelfde ondertekende bestand"));
    }

    #[test]
    fn the_signed_name_ends_in_pdf() {
        assert_eq!(pdf_name("besluit.docx"), "besluit.pdf");
        assert_eq!(pdf_name("besluit"), "besluit.pdf");
        assert_eq!(pdf_name("a.b.odt"), "a.b.pdf");
    }
}

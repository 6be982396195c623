#!/usr/bin/env python3
"""Checks signrelay's SOAP surfaces with a mainstream SOAP toolkit (zeep).

Usage: zeep_check.py BASE_URL   e.g. http://127.0.0.1:8080

Loads {base}/gosign/soap?wsdl and {base}/gosign/soap/events?wsdl as a GoSign integrator's toolkit
would, checks that the served addresses point at BASE_URL, and calls every operation over
each port (SOAP 1.1 and SOAP 1.2):

- workNotification SIGN_PROCESS_ENDED for envelopes ZEEP-11 / ZEEP-12, each with one inline
  document (DOCUMENT below): success must be true;
- getEnvelopeExternalStatus for user DOUGLAS and envelopes ZEEP-A, ZEEP-B (the latter with
  fromUserExtId ROSSI): the answer must list both envelopes by extId, in order, ZEEP-A
  workable and ZEEP-B not (with a reason and action DELETE); then for ZEEP-C alone: the user
  is not allowed to work, with a reason and globalEnvelopeAction DELETE, and no envelope list.
  So signrelay must run workability policy `registry` with unknown envelopes not workable and
  action DELETE, and have ZEEP-A (only) registered;
- LegalBus OperationDone insertEnvelope return_status_envelope_already_exists for envelopes
  ZEEP-LB-11 / ZEEP-LB-12: an empty OperationDoneResponse.

Exits 0 when all of that holds, non-zero (with the reason) otherwise. Needs `pip install zeep`.
"""

import datetime
import sys

import zeep

# The inline document the Rust test expects back from /api/v1/events/{id}/documents/0.
DOCUMENT = b"%PDF-1.7\nzeep check \x00\x01\x02\xff\n%%EOF\n"

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def step(envelope_id):
    utc = datetime.timezone.utc
    return {
        "mgrExternalId": "abianchi",
        "mgrName": "Anna",
        "mgrSurname": "Bianchi",
        "status": "WKD",
        "startedAt": datetime.datetime(2026, 11, 20, 10, 0, 0, tzinfo=utc),
        "endedAt": datetime.datetime(2026, 11, 20, 10, 5, 0, tzinfo=utc),
        "assignedTo": "Bianchi Anna (abianchi)",
        "stepNumber": 1,
        "actionsResume": {
            "actions": 1,
            "signActions": 1,
            "approveActions": 0,
            "viewActions": 0,
            "viewedActions": 0,
            "approvedActions": 0,
            "initialsActions": 0,
            "initialedActions": 0,
            "signedActions": 1,
            "confirmedActions": 1,
            "graphometricActions": 0,
            "filledGraphometricActions": 0,
        },
    }


def address_of(service):
    return service._binding_options["address"]


def main(base):
    base = base.rstrip("/")
    notifications = zeep.Client(f"{base}/gosign/soap?wsdl")
    events = zeep.Client(f"{base}/gosign/soap/events?wsdl")

    for port in ("Soap11", "Soap12"):
        svc = notifications.bind("WorkNotificationsService", f"WorkNotifications{port}")
        check(
            address_of(svc) == f"{base}/gosign/soap",
            f"WorkNotifications{port} address is {address_of(svc)!r}",
        )
        envelope = "ZEEP-11" if port == "Soap11" else "ZEEP-12"
        r = svc.workNotification(
            envelopeExternalId=envelope,
            notificationType="SIGN_PROCESS_ENDED",
            documents={
                "document": [
                    {
                        "docExternalId": f"DOC-{envelope}",
                        "content": {"mime-type": "application/pdf", "data": DOCUMENT},
                    }
                ]
            },
            liveStatus={"stepEvent": [step(envelope)]},
        )
        check(r is not None and r.success is True, f"{port} workNotification answered {r!r}")
        check(r is not None and not r.errors, f"{port} workNotification errors {r!r}")

        r = svc.getEnvelopeExternalStatus(
            userExtId="DOUGLAS",
            envelopeExtIdList=[
                {"_value_1": "ZEEP-A"},
                {"_value_1": "ZEEP-B", "fromUserExtId": "ROSSI"},
            ],
        )
        # zeep unwraps a response element with a single child: r is envelopeStatuses.
        st = r if hasattr(r, "userExtId") else getattr(r, "envelopeStatuses", None)
        check(st is not None, f"{port} getEnvelopeExternalStatus answered {r!r}")
        if st is not None:
            check(st.userExtId == "DOUGLAS", f"{port} userExtId {st.userExtId!r}")
            check(st.userAllowedToWork is True, f"{port} userAllowedToWork {st.userAllowedToWork!r}")
            check(
                st.globalEnvelopeAction in (None, "NOP"),
                f"{port} globalEnvelopeAction {st.globalEnvelopeAction!r}",
            )
            listed = [
                (s.extId, s.workable, bool(s.reason), s.action) for s in (st.envelopeStatuses or [])
            ]
            check(
                listed == [("ZEEP-A", True, False, None), ("ZEEP-B", False, True, "DELETE")],
                f"{port} envelopeStatuses {listed!r}",
            )

        r = svc.getEnvelopeExternalStatus(
            userExtId="DOUGLAS", envelopeExtIdList=[{"_value_1": "ZEEP-C"}]
        )
        st = r if hasattr(r, "userExtId") else getattr(r, "envelopeStatuses", None)
        check(st is not None, f"{port} getEnvelopeExternalStatus answered {r!r}")
        if st is not None:
            check(st.userAllowedToWork is False, f"{port} userAllowedToWork {st.userAllowedToWork!r}")
            check(bool(st.userReason), f"{port} userReason {st.userReason!r}")
            check(
                st.globalEnvelopeAction == "DELETE",
                f"{port} globalEnvelopeAction {st.globalEnvelopeAction!r}",
            )
            check(not st.envelopeStatuses, f"{port} envelopeStatuses {st.envelopeStatuses!r}")

        svc = events.bind("EvelopeEventService", f"EvelopeEvent{port}")
        check(
            address_of(svc) == f"{base}/gosign/soap/events",
            f"EvelopeEvent{port} address is {address_of(svc)!r}",
        )
        lb = "ZEEP-LB-11" if port == "Soap11" else "ZEEP-LB-12"
        r = svc.OperationDone(
            OperationDoneEvent={
                "ID": f"async-{lb}",
                "command": "insertEnvelope",
                "extId": lb,
                "details": "",
                "returnStatus": {
                    "code": "return_status_envelope_already_exists",
                    "message": "There is already an envelope with the same ExternalID",
                },
            }
        )
        check(r is None, f"{port} OperationDone answered {r!r}")

    if failures:
        print(f"zeep check: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("zeep check: all operations answered as expected")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as e:  # a fault, a transport error, an unloadable WSDL
        print(f"zeep check failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

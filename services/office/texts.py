"""What the office says, in Swedish and English: every page, label, button, notice and chart.

Ids the contract shares with the other services (purposes, systems, data categories, rights, grounds)
take their words from `privacy_runtime.vocabulary`; the words here are the office's own: how an
operator names a status, a channel, a command, an audit entry. `word(lang, kind, id)` gives them, and
an id without words is shown as given (underscores as spaces), never as an error."""

from __future__ import annotations

from privacy_runtime.pages.i18n import Catalogue, both
from privacy_runtime.pages.rendering import kit_catalogue

M = dict[str, dict[str, str]]

LAYOUT: M = {
    "brand": both("ISOPARTNER AB · Dataskyddskontoret", "ISOPARTNER AB · Privacy office"),
    "nav.label": both("Kontoret", "Office"),
    "nav.overview": both("Översikt", "Overview"),
    "nav.cases": both("Ärenden", "Cases"),
    "nav.intake": both("Inkommet", "Intake"),
    "nav.systems": both("System", "Systems"),
    "nav.dead_letters": both("Olästa meddelanden", "Dead letters"),
    "nav.audit": both("Granskningsspår", "Audit"),
    "signed_in_as": both("Inloggad som", "Signed in as"),
    "sign_out": both("Logga ut", "Sign out"),
    "none": both("–", "–"),
    "not_available": both("Inte tillgängligt: {problem}", "Not available: {problem}"),
    "not_available.short": both("Inte tillgängligt.", "Not available."),
    "problem.unreachable": both("{service}: går inte att nå ({kind})", "{service}: not reachable ({kind})"),
    "problem.refused": both("{service}: {message}", "{service}: {message}"),
    "age.old": both("{age} sedan", "{age} old"),
    "week.short": both("v. {week}", "W{week}"),
    "flag.overdue": both("försenat", "overdue"),
    "flag.review": both("granskas", "review"),
    "flag.awaiting_review": both("väntar på granskning", "awaiting review"),
    "flag.n_overdue": both("{n} försenade", "{n} overdue"),
    "flag.none": both("inga", "none"),
}

SIGN_IN: M = {
    "sign_in.title": both("Logga in", "Sign in"),
    "sign_in.heading": both("Logga in på dataskyddskontoret", "Sign in to the privacy office"),
    "sign_in.token": both("Din personliga operatörsnyckel", "Your personal operator token"),
    "sign_in.hint": both("Varje operatör har en egen nyckel; det du gör registreras under ditt namn.",
                         "Each operator has their own token; actions are recorded under your name."),
    "sign_in.button": both("Logga in", "Sign in"),
    "sign_in.refused": both("Nyckeln gäller inte.", "That token is not valid."),
}

OVERVIEW: M = {
    "overview.title": both("Översikt", "Overview"),
    "overview.heading": both("Kontoret i korthet", "The office at a glance"),
    "overview.cases": both("Ärenden", "Cases"),
    "overview.overdue": both("försenade", "overdue"),
    "overview.due_soon": both("ska vara klara inom 7 dagar", "due within 7 days"),
    "overview.awaiting_review": both("väntar på granskning", "awaiting review"),
    "overview.weekly": both("Mottagna och avslutade per vecka", "Received and completed per week"),
    "overview.weekly.chart": both("Ärenden mottagna och avslutade per vecka", "Cases received and completed per week"),
    "overview.weekly.received": both("mottagna", "received"),
    "overview.weekly.completed": both("avslutade", "completed"),
    "overview.weekly.caption": both("Ärenden per vecka", "Cases per week"),
    "overview.week": both("Vecka", "Week"),
    "overview.received": both("Mottagna", "Received"),
    "overview.completed": both("Avslutade", "Completed"),
    "overview.avg_days": both("Genomsnittligt antal dagar till avslut", "Average days to complete"),
    "overview.no_weeks": both("Inga ärenden de senaste 12 veckorna.", "No cases in the last 12 weeks."),
    "overview.days": both("Dagar till avslut", "Days to complete"),
    "overview.days.chart": both("Avslutade ärenden efter antal dagar till avslut (senaste 12 veckorna)",
                                "Cases completed by days to complete (last 12 weeks)"),
    "overview.days.series": both("ärenden efter dagar till avslut", "cases by days to complete"),
    "chart.no_data": both("inga uppgifter", "no data"),
    "overview.commands": both("Kommandon som väntar på svar", "Commands waiting for an answer"),
    "overview.commands.caption": both("Per system (kommandon från consent och dsar)",
                                      "Per system (commands from consent and dsar)"),
    "overview.system": both("System", "System"),
    "overview.outstanding": both("Obesvarade", "Outstanding"),
    "overview.overdue.column": both("Försenade", "Overdue"),
    "overview.oldest": both("Äldsta", "Oldest"),
    "overview.all_answered": both("Alla kommandon är besvarade.", "Every command has been answered."),
    "overview.emails": both("E-post", "Emails"),
    "overview.emails.queued": both("i kö", "queued"),
    "overview.emails.sending": both("skickas", "sending"),
    "overview.emails.failed": both("misslyckade", "failed"),
    "overview.emails.sent": both("skickade", "sent"),
    "overview.dead_letters": both("Olästa meddelanden", "Dead letters"),
    "overview.no_dead_letters": both("Inga olästa meddelanden.", "No dead letters."),
}

CASES: M = {
    "cases.title": both("Ärenden", "Cases"),
    "cases.search": both("Ärende-id eller registrerad", "Request id or subject"),
    "cases.status": both("Status", "Status"),
    "cases.right": both("Rättighet", "Right"),
    "cases.any": both("alla", "any"),
    "cases.overdue": both("försenade", "overdue"),
    "cases.review": both("väntar på granskning", "awaiting review"),
    "cases.filter": both("Filtrera", "Filter"),
    "cases.count.one": both("1 ärende", "1 case"),
    "cases.count.many": both("{n} ärenden", "{n} cases"),
    "cases.page_of": both(", sida {page} av {last}", ", page {page} of {last}"),
    "cases.caption": both("Ärenden efter sista svarsdag", "Cases by due date"),
    "cases.choose": both("Välj", "Choose"),
    "cases.choose_case": both("Välj ärende {id}", "Choose case {id}"),
    "cases.request": both("Ärende", "Request"),
    "cases.via": both("Via", "Via"),
    "cases.received": both("Mottaget", "Received"),
    "cases.due": both("Sista svarsdag", "Due"),
    "cases.flags": both("Markeringar", "Flags"),
    "cases.extended": both("förlängd", "extended"),
    "cases.none": both("Inga ärenden matchar.", "No cases match."),
    "cases.bulk": both("Med de valda ärendena", "With the chosen cases"),
    "cases.bulk.ground": both("Skäl för avslag", "Ground for rejecting"),
    "cases.bulk.reason": both("Skäl med dina ord (skickas till personen)",
                              "Reason in your words (sent to the person)"),
    "cases.write_below": both("(skriv skälet nedan)", "(write the reason below)"),
    "cases.pages": both("Sidor", "Pages"),
    "cases.previous": both("Föregående sida", "Previous page"),
    "cases.next": both("Nästa sida", "Next page"),
    "button.approve": both("Godkänn", "Approve"),
    "button.reject": both("Avslå", "Reject"),
}

#: Why a case waits for an operator, per dsar's `review_code` (`services.dsar.reviews`), with its
#: parameters in words (`present.review_text`). A code without words here shows dsar's English sentence.
REVIEW: M = {
    "review.retention_expired": both(
        "lagringstiden har gått ut: ingen registrering, samtyckesändring eller begäran har setts på längre tid "
        "än datakartans lagringstid, men inloggningar och köp syns inte här; kontrollera att personen verkligen "
        "är inaktiv, godkänn sedan för att radera eller avslå för att behålla uppgifterna",
        "retention expired: no registration, consent change or request seen for longer than the data map's "
        "retention, but logins and purchases are not seen here; check the person is really inactive, then "
        "approve to erase or reject to keep the data"),
    "review.fields_not_held": both("inget system i datakartan har fälten {fields}",
                                   "no system in the data map holds the fields {fields}"),
    "review.objection_to_weigh": both(
        "invändning mot behandling som grundar sig på berättigat intresse: väg skälen mot varandra "
        "(art. 21.1) och godkänn eller avslå",
        "objection to legitimate-interest processing: weigh the grounds (Art. 21(1)) and approve or reject"),
    "review.correction_values_unreadable": both(
        "de rättade värdena till {systems} går inte längre att läsa, så inget skickades; försök igen eller "
        "hantera för hand",
        "no correction values to send to {systems} (they can no longer be read); retry or handle by hand"),
    "review.lift_failed": both(
        "{systems} kunde inte häva begränsningen; godkänn för att försöka igen eller hantera för hand",
        "{systems} could not lift the restriction; approve to retry or handle by hand"),
    "review.answer_unusable": both(
        "svaret från {system} på kommandot ”{action}” går inte att använda: {problem}; godkänn för att fråga "
        "igen eller hantera för hand",
        "{system}'s answer to “{action}” cannot be used: {problem}; approve to ask again or handle by hand"),
    "review.system_failed": both(
        "{system} kunde inte utföra kommandot ”{action}”; försök igen eller hantera för hand",
        "{system} could not carry out “{action}”; retry or handle by hand"),
}

CASE: M = {
    "case.title": both("Ärende {id}", "Case {id}"),
    "case.right": both("Rättighet", "Right"),
    "case.status": both("Status", "Status"),
    "case.why_waits": both("Varför det väntar", "Why it waits"),
    "case.subject": both("Registrerad", "Subject"),
    "case.via": both("Begärt via", "Requested via"),
    "case.identity.verified": both("identiteten bekräftad", "identity verified"),
    "case.identity.not_verified": both("identiteten inte bekräftad", "identity not verified"),
    "case.received": both("Mottaget", "Received"),
    "case.due": both("Sista svarsdag", "Due"),
    "case.extended": both("(förlängd med {months} månad(er) från {original}: {reason})",
                          "(extended by {months} month(s) from {original}: {reason})"),
    "case.reason": both("Skäl", "Reason"),
    "case.closed": both("Avslutat", "Closed"),
    "case.actions": both("Åtgärder", "Actions"),
    "case.no_action": both("Ingen åtgärd passar ärendet som det ser ut nu.",
                           "No action applies to the case as it stands."),
    "case.approve": both("Godkänn", "Approve"),
    "case.approve.identity": both("Bekräfta själv personens identitet och sätt igång arbetet.",
                                  "Confirm the person's identity yourself and start the work."),
    "case.approve.go_ahead": both("Fortsätt: {why}", "Go ahead: {why}"),
    "case.approve.retry": both("försök igen med systemen som misslyckades", "retry the systems that failed"),
    "case.reject": both("Avslå", "Reject"),
    "case.reject.ground": both("Rättslig grund", "Legal ground"),
    "case.reject.reason": both(
        "Med dina ord (skickas till personen med grunden och hur man klagar hos IMY)",
        "In your words (sent to the person with the ground and how to complain to IMY)"),
    "case.extend": both("Förläng svarstiden", "Extend the deadline"),
    "case.extend.one": both("med 1 månad", "by 1 month"),
    "case.extend.two": both("med 2 månader", "by 2 months"),
    "case.extend.reason": both("Skäl (skickas till personen)", "Reason (sent to the person)"),
    "case.extend.button": both("Förläng", "Extend"),
    "case.lift": both("Häv begränsningen", "Lift the restriction"),
    "case.lift.note": both("Personen får besked innan begränsningen upphör (art. 18.3).",
                           "The person is told before the restriction ends (Art. 18(3))."),
    "case.lift.button": both("Häv", "Lift"),
    "case.resend": both("Skicka igen till ett system", "Re-send to one system"),
    "case.resend.system": both("System som inte har svarat", "System that has not answered"),
    "case.resend.button": both("Skicka igen", "Re-send"),
    "case.timeline": both("Händelser", "Timeline"),
    "case.timeline.caption": both("Allt som hänt, äldst först", "Everything that happened, oldest first"),
    "case.when": both("När (UTC)", "When (UTC)"),
    "case.what": both("Vad", "What"),
    "case.who": both("Vem", "Who"),
    "case.detail": both("Detaljer", "Detail"),
    "case.commands": both("Kommandon och svar", "Commands and answers"),
    "case.commands.caption": both("Varje kommando som skickats för ärendet, och vad systemet svarade",
                                  "Each command sent for this case, and what the system answered"),
    "case.system": both("System", "System"),
    "case.action": both("Åtgärd", "Action"),
    "case.sent": both("Skickat", "Sent"),
    "case.attempts": both("Försök", "Attempts"),
    "case.answer": both("Svar", "Answer"),
    "case.answered": both("Besvarat", "Answered"),
    "case.waiting": both("väntar", "waiting"),
    "case.no_commands": both("Inga kommandon skickade.", "No commands sent."),
    "actor.service": both("tjänsten {name}", "{name} service"),
}

INTAKE: M = {
    "intake.title": both("Inkommet", "Intake"),
    "intake.lead": both(
        "Registrera det som kommit till dataskyddsadressen via e-post eller telefon. Personen hittas via "
        "e-postadressen hen registrerade sig med; en begäran bekräftas sedan med en kod som skickas till "
        "den adressen innan något görs.",
        "Record what reached the privacy address by email or phone. The person is found by the email address "
        "they registered with; a request is then confirmed by a code sent to that address before anything "
        "is done."),
    "intake.request": both("En begäran om en rättighet", "A request about a right"),
    "intake.email": both("Personens e-postadress", "The person's email address"),
    "intake.accounts": both("Konton med den adressen", "Accounts with that address"),
    "intake.arrived": both("Hur den kom in", "How it arrived"),
    "intake.by_email": both("via e-post", "by email"),
    "intake.by_phone": both("via telefon (kundtjänst)", "by phone (support)"),
    "intake.right": both("Rättighet", "Right"),
    "intake.ground": both("Radering: grund", "Erasure: ground"),
    "intake.processing": both("Invändning: behandling", "Objection: processing"),
    "intake.circumstance": both("Begränsning: omständighet", "Restriction: circumstance"),
    "intake.format": both("Dataportabilitet: format", "Portability: format"),
    "intake.corrections": both("Rättelse: ändringar, en per rad som \"fält: nytt värde\"",
                               "Rectification: corrections, one per line as \"field: new value\""),
    "intake.record_request": both("Registrera begäran", "Record the request"),
    "intake.opt_out": both("En avregistrering", "An opt-out"),
    "intake.opt_out.what": both("Vad personen avregistrerar sig från", "What they opt out of"),
    "intake.record_opt_out": both("Registrera avregistreringen", "Record the opt-out"),
    "intake.recorded": both(
        "Begäran registrerad ({right}, {via}). Personen får en kod för att bekräfta att det är hen. Ärende "
        "{request_id}.",
        "Request recorded ({right}, {via}). The person is sent a code to confirm it is them. Case {request_id}."),
    "intake.opt_out.recorded": both("Avregistreringen registrerad; alla system som marknadsför får besked om "
                                    "att sluta.",
                                    "Opt-out recorded; every system that markets is told to stop."),
    "intake.no_email": both("Skriv e-postadressen som begäran kom från.",
                            "Write the email address the request came from."),
    "intake.unknown": both("Ingen registrerad person har den adressen. Be personen skriva från adressen hen "
                           "registrerade sig med.",
                           "No registered person has that address. Ask them to write from the address they "
                           "registered with."),
    "intake.several": both("Flera konton har den adressen: välj ett.",
                           "Several accounts have that address: choose one."),
    # what intake.IntakeError says (its key), with values
    "intake.error.right": both("välj rättigheten personen begär", "choose the right the person asks for"),
    "intake.error.requested_via": both("välj hur begäran kom in (e-post eller telefon)",
                                       "choose how the request arrived (email or phone)"),
    "intake.error.ground": both("välj grunden för radering", "choose the ground for erasure"),
    "intake.error.circumstance": both("välj omständigheten för begränsningen",
                                      "choose the circumstance of the restriction"),
    "intake.error.processing": both("välj behandlingen som personen invänder mot", "choose the processing objected to"),
    "intake.error.format": both("välj exportformat", "choose the export format"),
    "intake.error.correction_line": both("skriv varje ändring på en egen rad som 'fält: nytt värde'",
                                         "write each correction on its own line as 'field: new value'"),
    "intake.error.no_corrections": both("en rättelse behöver minst en ändring",
                                        "a rectification needs at least one correction"),
    "intake.error.too_many": both("högst {n} ändringar", "at most {n} corrections"),
    "intake.error.contract": both("begäran passar inte avtalet: {problem}",
                                  "the request does not fit the contract: {problem}"),
    "intake.error.purposes": both("välj vad personen avregistrerar sig från", "choose what the person opts out of"),
}

SYSTEMS: M = {
    "systems.title": both("System", "Systems"),
    "systems.lead": both(
        "Registerkartan ({n} system) och vad varje system är skyldigt: kommandon från tjänsterna consent och "
        "dsar som systemet inte har besvarat.",
        "The data map ({n} systems) and what each still owes: commands sent by the consent and dsar services "
        "that the system has not answered."),
    "systems.caption": both("Registerkarta och skuld per system", "Data map and debt per system"),
    "systems.system": both("System", "System"),
    "systems.holds": both("Innehåller", "Holds"),
    "systems.purposes": both("Ändamål", "Purposes"),
    "systems.location": both("Plats", "Location"),
    "systems.transfer": both("Överföringsmekanism", "Transfer mechanism"),
    "systems.on_erase": both("Vid radering", "On erase"),
    "systems.outstanding": both("Obesvarade", "Outstanding"),
    "systems.overdue": both("Försenade", "Overdue"),
    "systems.oldest": both("Äldsta", "Oldest"),
    "systems.resend": both("Skicka igen", "Re-send"),
    "systems.resend.label": both("Skicka obesvarade kommandon till {name} igen",
                                 "Re-send unanswered commands to {name}"),
    "systems.ours": both("(vårt)", "(ours)"),
    "systems.unanswered": both("Obesvarade kommandon till {name}", "Unanswered commands to {name}"),
    "systems.unanswered.caption": both("Äldst först (från consent och dsar)", "Oldest first (from consent and dsar)"),
    "systems.from": both("Från", "From"),
    "systems.action": both("Åtgärd", "Action"),
    "systems.case": both("Ärende", "Case"),
    "systems.sent": both("Skickat", "Sent"),
    "systems.respond_by": both("Svar senast", "Respond by"),
    "systems.attempts": both("Försök", "Attempts"),
    "systems.state": both("Läge", "State"),
    "systems.retrying": both("misslyckades, försöker igen", "failed, retrying"),
    "systems.waiting": both("väntar", "waiting"),
    "systems.nothing": both("Inget obesvarat.", "Nothing outstanding."),
    "systems.resent": both("{n} obesvarade kommandon till {name} skickade igen nu.",
                           "{n} unanswered command(s) to {name} re-sent now."),
}

DEAD_LETTERS: M = {
    "dead.title": both("Olästa meddelanden", "Dead letters"),
    "dead.lead": both(
        "Meddelanden som en tjänst inte kunde läsa, sparade på <topic>.dlq. Här visas var, när och varför; "
        "aldrig själva meddelandet (det kan innehålla personuppgifter). Skicka igen publicerar originalet "
        "på nytt till sitt ämne, med ett eget händelse-id, så att en tjänst som hanterat det under tiden "
        "bortser från det.",
        "Messages a service could not read, kept on <topic>.dlq. Shown: where, when and why; never the "
        "message itself (it may hold personal data). Replay publishes the original again to its topic, "
        "with its own event id, so a service that handled it meanwhile ignores it."),
    "dead.caption": both("Nyaste först", "Newest first"),
    "dead.time": both("Tid (UTC)", "Time (UTC)"),
    "dead.error": both("Fel", "Error"),
    "dead.key": both("Nyckel", "Key"),
    "dead.original": both("Original", "Original"),
    "dead.refused_by": both("Avvisat av", "Refused by"),
    "dead.replay": both("Skicka igen", "Replay"),
    "dead.replay.label": both("Skicka {topic} partition {partition} position {offset} igen",
                              "Replay {topic} partition {partition} offset {offset}"),
    "dead.none": both("Inga olästa meddelanden.", "No dead letters."),
    "dead.replayed": both("{where} skickat igen till {topic}.", "Replayed {where} to {topic}."),
    "dead.not_replayed": both("Inte skickat igen: {why}", "Not replayed: {why}"),
    "dead.missing.topic": both("{topic} är inget ämne för olästa meddelanden",
                               "{topic} is not a dead-letter topic"),
    "dead.missing.partition": both("{topic} har ingen partition {partition}", "{topic} has no partition {partition}"),
    "dead.missing.offset": both("inget oläst meddelande på {where}", "no dead letter at {where}"),
    "dead.missing.elsewhere": both("meddelandet pekar på {named!r}, inte på {own}",
                                   "the dead letter names {named!r}, not {own}"),
}

AUDIT: M = {
    "audit.title": both("Granskningsspår", "Audit"),
    "audit.heading": both("Granskningskedjor", "Audit chains"),
    "audit.lead": both(
        "Varje tjänst för ett granskningsspår som bara kan läggas till och där varje rad är kedjad till den "
        "förra med en kontrollsumma. Varje rad kontrolleras mot den före; en ändrad, borttagen eller "
        "inskjuten rad bryter kedjan därifrån. En lång kedja tar en stund att gå igenom, så varje tjänst "
        "svarar med sin senaste kontroll (högst några minuter gammal; tiden visas); kontrollera nu för att "
        "gå igenom alla kedjor igen.",
        "Each service keeps an append-only, hash-chained audit trail. Every entry is checked now against the "
        "one before it; a changed, removed or inserted row breaks the chain from there on. A long chain takes "
        "a while to walk, so each service answers with its latest verification (at most a few minutes old; "
        "the time is shown); verify now to walk every chain again."),
    "audit.verify": both("Kontrollera nu", "Verify now"),
    "audit.caption": both("Kontroll av varje kedja", "Verification of each chain"),
    "audit.service": both("Tjänst", "Service"),
    "audit.entries": both("Rader", "Entries"),
    "audit.result": both("Resultat", "Result"),
    "audit.first_broken": both("Första brutna rad", "First broken row"),
    "audit.verified_at": both("Kontrollerad (UTC)", "Verified (UTC)"),
    "audit.not_checked": both("inte kontrollerad", "not checked"),
    "audit.intact": both("hel", "intact"),
    "audit.broken": both("bruten", "broken"),
    "audit.problems.one": both("(1 problem)", "(1 problem)"),
    "audit.problems.many": both("({n} problem)", "({n} problems)"),
    "audit.row": both("rad {seq}: {action} av {actor} {at}", "row {seq}: {action} by {actor} at {at}"),
    "audit.ref": both(", ref. {ref}", ", ref {ref}"),
    "audit.verified_now": both("Alla kedjor kontrollerade nu.", "Every chain verified now."),
    "audit.not_verified": both("Inte kontrollerat: {why}", "Not verified: {why}"),
}

FLASH: M = {
    "flash.choose": both("Välj minst ett ärende.", "Choose at least one case."),
    "flash.reject_needs_reason": both("Ett avslag behöver ett skäl: välj en grund eller skriv ett.",
                                      "A rejection needs a reason: choose a ground or write one."),
    "flash.extend_needs": both("En förlängning behöver 1 eller 2 månader och ett skäl (det skickas till "
                               "personen).",
                               "An extension needs 1 or 2 months and a reason (it is sent to the person)."),
    "flash.approved_n": both("Godkände {done} av {total}.", "Approved {done} of {total}."),
    "flash.rejected_n": both("Avslog {done} av {total}.", "Rejected {done} of {total}."),
    "flash.refused": both(" Vägrade: {why}", " Refused: {why}"),
    "flash.not_done": both("Inte gjort: {why}", "Not done: {why}"),
    "flash.approve": both("Godkänt.", "Approved."),
    "flash.reject": both("Avslaget; personen får veta varför, och om IMY.",
                         "Rejected; the person is told why, and of IMY."),
    "flash.extend": both("Svarstiden förlängd; personen får veta varför.",
                         "Deadline extended; the person is told why."),
    "flash.lift": both("Begränsningen hävd; personen får besked.", "Restriction lifted; the person is told."),
    "flash.resend": both("Kommandon skickade igen till {name}.", "Commands re-sent to {name}."),
}

#: Grounds for refusing a request, as the operator reads them (what is sent is `present.REJECTION_GROUNDS`).
REJECTION: M = {
    "rejection.legitimate_grounds": both(
        "Tvingande berättigade skäl för behandlingen väger tyngre än invändningen (GDPR art. 21.1)",
        "Compelling legitimate grounds for the processing override the objection (GDPR Art. 21(1))"),
    "rejection.legal_claims": both(
        "Uppgifterna behövs för att fastställa, göra gällande eller försvara rättsliga anspråk "
        "(GDPR art. 17.3 e, 21.1)",
        "The data is needed to establish, exercise or defend legal claims (GDPR Art. 17(3)(e), 21(1))"),
    "rejection.legal_obligation": both(
        "Lagen kräver att vi sparar uppgifterna: bokföringslagen 7 kap. 2 § (GDPR art. 17.3 b)",
        "The law requires us to keep the data: Bokföringslagen 7:2 (GDPR Art. 17(3)(b))"),
    "rejection.unfounded": both("Begäran är uppenbart ogrundad eller orimlig (GDPR art. 12.5)",
                                "The request is manifestly unfounded or excessive (GDPR Art. 12(5))"),
    "rejection.identity": both("Vi kunde inte bekräfta identiteten hos den som frågar (GDPR art. 12.6)",
                               "We could not confirm the identity of the person asking (GDPR Art. 12(6))"),
    "rejection.others_rights": both(
        "Ett svar skulle inverka negativt på andras rättigheter och friheter (GDPR art. 15.4)",
        "Answering would adversely affect the rights and freedoms of others (GDPR Art. 15(4))"),
    "rejection.still_needed": both(
        "Uppgifterna behövs fortfarande för ändamålet de samlades in för (GDPR art. 17.1 a)",
        "The data is still needed for the purpose it was collected for (GDPR Art. 17(1)(a))"),
}

#: The office's words for ids, by kind (`word(lang, kind, id)`).
WORDS: M = {
    # a case's status, as the operator reads it (the vocabulary's words are addressed to the person)
    "status.received": both("mottaget", "received"),
    "status.identity_pending": both("väntar på identitetskod", "identity pending"),
    "status.in_progress": both("pågår", "in progress"),
    "status.awaiting_systems": both("väntar på systemen", "awaiting systems"),
    "status.completed": both("klart", "completed"),
    "status.rejected": both("avslaget", "rejected"),
    "status.cancelled": both("avbrutet", "cancelled"),
    "status.closed_unverified": both("stängt: identiteten inte bekräftad", "closed: identity not verified"),
    # how a request arrived
    "via.email": both("e-post", "email"),
    "via.web_form": both("webbformulär", "web form"),
    "via.support": both("telefon (kundtjänst)", "phone (support)"),
    "via.internal": both("internt", "internal"),
    # what a command asks a system to do
    "command.suppress": both("stoppa", "suppress"),
    "command.unsuppress": both("återuppta", "unsuppress"),
    "command.revoke_sharing": both("sluta dela", "revoke sharing"),
    "command.restore_sharing": both("dela igen", "restore sharing"),
    "command.erase": both("radera", "erase"),
    "command.restrict": both("begränsa", "restrict"),
    "command.lift_restriction": both("häv begränsning", "lift restriction"),
    "command.rectify": both("rätta", "rectify"),
    "command.export": both("exportera", "export"),
    # what a system answered a command
    "answer.done": both("utfört", "done"),
    "answer.failed": both("misslyckades", "failed"),
    "answer.not_found": both("finns inte", "not found"),
    "answer.retained": both("behålls", "retained"),
    # what a system does on erasure (data map `on_erase`)
    "erase.erase": both("raderar", "erases"),
    "erase.retain": both("behåller", "retains"),
    # the services whose chains the audit page shows
    "service.consent": both("Samtycken (consent)", "Consents (consent)"),
    "service.dsar": both("Ärenden (dsar)", "Requests (dsar)"),
    "service.notifier": both("Utskick (notifier)", "Emails (notifier)"),
    "service.office": both("Dataskyddskontoret (office)", "Privacy office (office)"),
    # the timeline's detail fields
    "detail.reason": both("skäl", "reason"),
    "detail.template": both("mejl", "email"),
    "detail.system": both("system", "system"),
    "detail.action": both("åtgärd", "action"),
    "detail.status": both("status", "status"),
    "detail.months": both("månader", "months"),
    "detail.due_at": both("sista svarsdag", "due"),
    "detail.from": both("från", "from"),
    "detail.to": both("till", "to"),
    "detail.method": both("sätt", "method"),
    "detail.commands": both("kommandon", "commands"),
    "detail.attempts": both("försök", "attempts"),
    "detail.systems": both("system", "systems"),
    # audit entries, in words
    "action.case_received": both("Begäran mottagen", "Request received"),
    "action.case_identity_pending": both("Identitetskod begärd", "Identity code requested"),
    "action.case_identity_verified": both("Identiteten bekräftad", "Identity verified"),
    "action.case_in_progress": both("Arbetet påbörjat", "Work started"),
    "action.case_awaiting_systems": both("Kommandon skickade; väntar på systemen",
                                         "Commands sent; waiting for systems"),
    "action.case_completed": both("Klart", "Completed"),
    "action.case_rejected": both("Avslaget", "Rejected"),
    "action.case_cancelled": both("Avbrutet", "Cancelled"),
    "action.case_closed_unverified": both("Stängt: identiteten inte bekräftad", "Closed: identity not verified"),
    "action.case_manual_review": both("Väntar på en operatör", "Waiting for an operator"),
    "action.case_system_answered": both("Ett system svarade", "A system answered"),
    "action.case_extended": both("Svarstiden förlängd", "Deadline extended"),
    "action.case_overdue": both("Försenat", "Overdue"),
    "action.case_due_soon": both("Snart sista svarsdag", "Due soon"),
    "action.case_retry_approved": both("Nytt försök godkänt", "Retry approved"),
    "action.case_restriction_lifted": both("Begränsningen hävd", "Restriction lifted"),
    "action.case_duplicate_request": both("Samma begäran mottagen igen", "Same request received again"),
    "action.notification_requested": both("Mejl beställt", "Email requested"),
    "action.verification_failed": both("Fel identitetskod", "Wrong identity code"),
    "action.export_assembled": both("Exportpaketet sammanställt", "Export package assembled"),
    "action.export_downloaded": both("Exporten hämtad", "Export downloaded"),
    "action.operator_approve": both("Operatören godkände", "Operator approved"),
    "action.operator_reject": both("Operatören avslog", "Operator rejected"),
    "action.operator_extend": both("Operatören förlängde svarstiden", "Operator extended the deadline"),
    "action.operator_lift": both("Operatören hävde begränsningen", "Operator lifted the restriction"),
    "action.operator_resend": both("Operatören skickade kommandon igen", "Operator re-sent commands"),
    "action.subject_shredded": both("Personens nyckel förstörd", "Subject's key destroyed"),
}

MESSAGES: M = {**LAYOUT, **SIGN_IN, **OVERVIEW, **CASES, **REVIEW, **CASE, **INTAKE, **SYSTEMS, **DEAD_LETTERS,
               **AUDIT, **FLASH, **REJECTION, **WORDS}
#: The office's texts with the kit's (layout, error pages): what the pages are rendered with.
CATALOGUE: Catalogue = kit_catalogue(MESSAGES)


def word(lang: str, kind: str, value: object) -> str:
    """The office's words for an id of `kind` (status, via, command, answer, erase, service, detail, action);
    an id without words is shown as given, underscores as spaces."""
    text = "" if value is None else str(value)
    key = f"{kind}.{text}"
    return CATALOGUE.text(lang, key) if CATALOGUE.has(key) else text.replace("_", " ")

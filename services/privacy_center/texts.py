"""What the privacy center says, in Swedish and English, in plain words from the privacy policy."""

from __future__ import annotations

from privacy_runtime.pages.i18n import both as _both
from privacy_runtime.summary import SUMMARY_MESSAGES

M = dict[str, dict[str, str]]


PAGES: M = {
    "site.name": _both("Integritetscenter", "Privacy center"),
    "nav.me": _both("Mina uppgifter", "My data"),
    "nav.sign_out": _both("Logga ut", "Sign out"),
    # start
    "start.title": _both("Dina personuppgifter hos ISOPARTNER", "Your personal data at ISOPARTNER"),
    "start.lead": _both(
        "Här ser du vad vi gör med dina personuppgifter och bestämmer själv över det som bygger på ditt samtycke.",
        "Here you can see what we do with your personal data and decide for yourself about what rests on "
        "your consent."),
    "start.can.title": _both("Det här kan du göra", "What you can do here"),
    "start.can.see": _both("Se för vilka ändamål vi använder dina uppgifter, på vilken rättslig grund och varför.",
                           "See what we use your data for, on which legal basis and why."),
    "start.can.consent": _both("Ge eller ta tillbaka samtycke, till exempel till marknadsföring via e-post.",
                               "Give or withdraw consent, for example to marketing by email."),
    "start.can.copy": _both("Få en kopia av dina uppgifter (JSON eller CSV).",
                            "Get a copy of your data (JSON or CSV)."),
    "start.can.correct": _both("Be oss rätta uppgifter som är fel.", "Ask us to correct data that is wrong."),
    "start.can.erase": _both("Be oss radera dina uppgifter.", "Ask us to erase your data."),
    "start.can.restrict": _both("Be oss begränsa eller sluta med viss behandling.",
                                "Ask us to restrict, or object to, some processing."),
    "start.can.follow": _both("Följa dina begäranden och när vi senast ska svara (inom en månad).",
                              "Follow your requests and when we must answer at the latest (within one month)."),
    "start.email.title": _both("Logga in med din e-postadress", "Sign in with your email address"),
    "start.email.label": _both("E-postadress", "Email address"),
    "start.email.hint": _both(
        "Vi skickar en inloggningslänk till adressen om vi har uppgifter om den. Länken gäller i 30 minuter "
        "och kan användas en gång.",
        "We send a sign-in link to the address if we hold data about it. The link is valid for 30 minutes "
        "and can be used once."),
    "start.email.button": _both("Skicka inloggningslänk", "Send sign-in link"),
    "start.email.invalid": _both("Skriv en giltig e-postadress, till exempel namn@exempel.se.",
                                 "Enter a valid email address, for example name@example.com."),
    "start.code": _both(
        "Har du begärt något via e-post och fått en kod? Följ länken i mejlet med koden.",
        "Did you make a request by email and get a code? Follow the link in the email with the code."),
    # sent
    "sent.title": _both("Titta i din inkorg", "Check your inbox"),
    "sent.body": _both(
        "Om vi har uppgifter om adressen har vi nu skickat ett mejl med en inloggningslänk. Den gäller i 30 "
        "minuter och kan användas en gång.",
        "If we hold data about this address, we have now sent an email with a sign-in link. It is valid for "
        "30 minutes and can be used once."),
    "sent.none": _both("Inget mejl? Kontrollera skräpposten, eller försök igen om en stund.",
                       "No email? Check your spam folder, or try again in a while."),
    # sign-in link landing
    "signin.title": _both("Logga in", "Sign in"),
    "signin.body": _both("Tryck på knappen för att se och ändra dina uppgifter.",
                         "Press the button to see and change your data."),
    "signin.button": _both("Fortsätt till mina uppgifter", "Continue to my data"),
    "link.used": _both("Länken har redan använts. Be om en ny länk på startsidan.",
                       "This link has already been used. Ask for a new link on the start page."),
    "link.expired": _both("Länken har gått ut. Be om en ny länk på startsidan.",
                          "This link has expired. Ask for a new link on the start page."),
    "link.unknown": _both("Länken är inte giltig. Be om en ny länk på startsidan.",
                          "This link is not valid. Ask for a new link on the start page."),
    "session.ended": _both("Du är inte inloggad, eller så har sessionen gått ut efter 30 minuter utan aktivitet. "
                           "Be om en ny inloggningslänk på startsidan.",
                           "You are not signed in, or your session ended after 30 minutes without activity. "
                           "Ask for a new sign-in link on the start page."),
    # me
    "me.title": _both("Mina uppgifter", "My data"),
    "me.intro": _both("Så här använder vi dina personuppgifter just nu.", "This is how we use your personal data now."),
    "me.held.intro": _both("Samma sammanfattning som i kopian av dina uppgifter: varje system, vad det har, varför, "
                           "hur länge, var och vem som tar emot det.",
                           "The same summary as in the copy of your data: each system, what it holds, why, for how "
                           "long, where and who receives it."),
    "me.purposes.title": _both("Vad vi använder dina uppgifter till", "What we use your data for"),
    "me.purposes.intro": _both(
        "Det som bygger på ditt samtycke kan du slå på och av. Ändringen gäller alla våra system "
        "och når dem inom kort.",
        "What rests on your consent you can switch on and off. The change applies to all our systems and "
        "reaches them shortly."),
    "me.allowed": _both("Tillåtet", "Allowed"),
    "me.not_allowed": _both("Inte tillåtet", "Not allowed"),
    "me.basis": _both("Rättslig grund", "Legal basis"),
    "me.why": _both("Varför", "Why"),
    "me.your_choice": _both("Ditt val", "Your choice"),
    "me.choice.on": _both("Ja, det får ni", "Yes, you may"),
    "me.choice.off": _both("Nej, det får ni inte", "No, you may not"),
    "me.choice.since": _both("senast ändrat {date}", "last changed {date}"),
    "me.save": _both("Spara mina val", "Save my choices"),
    "me.blocked.restricted": _both("Behandlingen är begränsad på din begäran: vi lagrar bara uppgifterna.",
                                   "Processing is restricted at your request: we only store the data."),
    "me.blocked.minor": _both("Du var under 18 år när du registrerades: vi ber inte om samtycke.",
                              "You were under 18 when you registered: we do not ask for consent."),
    "me.blocked.objection": _both("Stoppat efter din invändning.", "Stopped after your objection."),
    "me.requests.title": _both("Mina begäranden", "My requests"),
    "me.requests.none": _both("Du har inga begäranden hos oss.", "You have no requests with us."),
    "me.request.received": _both("Mottagen", "Received"),
    "me.request.due": _both("Svar senast", "Answer due by"),
    "me.request.status": _both("Status", "Status"),
    "me.request.extended": _both("Tiden är förlängd.", "The time has been extended."),
    "me.request.overdue": _both("Vi är sena med svaret. Du kan klaga hos IMY.",
                                "We are late with the answer. You can complain to IMY."),
    "me.request.reason": _both("Skäl", "Reason"),
    "me.request.note": _both("Det du skrev", "What you wrote"),
    "me.request.timeline": _both("Händelser", "Timeline"),
    "me.rights.title": _both("Utöva dina rättigheter", "Exercise your rights"),
    "me.rights.intro": _both(
        "Du är inloggad via en länk till din e-postadress, så vi behöver ingen kod. Vi svarar inom en månad.",
        "You signed in through a link sent to your email address, so we need no code. We answer within one month."),
    "me.send": _both("Skicka begäran", "Send request"),
    "me.explanation": _both("Förklara varför", "Explain why"),
    "me.reasons": _both("Dina skäl (frivilligt)", "Your reasons (optional)"),
    "me.corrections.hint": _both("Fyll bara i det som ska ändras.", "Fill in only what should change."),
    # rights
    "right.access": _both("Få en kopia av mina uppgifter", "Get a copy of my data"),
    "right.portability": _both("Flytta mina uppgifter (dataportabilitet)", "Move my data (portability)"),
    "right.rectification": _both("Rätta mina uppgifter", "Correct my data"),
    "right.erasure": _both("Radera mina uppgifter", "Erase my data"),
    "right.restriction": _both("Begränsa behandlingen", "Restrict processing"),
    "right.objection": _both("Invända mot behandling", "Object to processing"),
    "right.access.intro": _both("Du får ett mejl med en länk till ett paket med allt vi har om dig i alla system.",
                                "You get an email with a link to a package with everything we hold about you "
                                "in every system."),
    "right.portability.intro": _both("Uppgifterna du gett oss i ett maskinläsbart format, för att ta med till "
                                     "någon annan.",
                                     "The data you gave us in a machine-readable format, to take to someone else."),
    "right.rectification.intro": _both("Skriv de nya uppgifterna och förklara vad som är fel.",
                                       "Write the new data and explain what is wrong."),
    "right.erasure.intro": _both(
        "Vi raderar dina uppgifter i alla system, utom det lagen kräver att vi sparar (bokföring i 7 år). "
        "Ditt konto upphör.",
        "We erase your data in every system except what the law makes us keep (bookkeeping, 7 years). "
        "Your account ends."),
    "right.restriction.intro": _both("Vi lagrar uppgifterna men använder dem inte medan frågan utreds.",
                                     "We keep the data but do not use it while the matter is looked into."),
    "right.objection.intro": _both("Invändning mot marknadsföring och profilering gäller alltid.",
                                   "An objection to marketing and profiling always applies."),
    "field.format": _both("Format", "Format"),
    "format.json": _both("JSON", "JSON"),
    "format.csv": _both("CSV (kalkylark)", "CSV (spreadsheet)"),
    "field.ground": _both("Varför ska uppgifterna raderas?", "Why should the data be erased?"),
    "ground.no_longer_necessary": _both("Ni behöver dem inte längre", "You no longer need them"),
    "ground.consent_withdrawn": _both("Jag tar tillbaka mitt samtycke", "I withdraw my consent"),
    "ground.objection_legitimate_interest": _both("Jag invänder mot behandling på grund av berättigat intresse",
                                                  "I object to processing based on legitimate interest"),
    "ground.marketing_objection": _both("Jag invänder mot marknadsföring", "I object to marketing"),
    "ground.unlawful_processing": _both(
        "Uppgifterna har behandlats olagligt",
        "The data has been processed unlawfully"),
    "ground.child_data": _both("Uppgifterna samlades in när jag var barn", "The data was collected when I was a child"),
    "field.circumstance": _both("Varför ska behandlingen begränsas?", "Why should processing be restricted?"),
    "circumstance.accuracy_contested": _both("Uppgifterna är felaktiga", "The data is not accurate"),
    "circumstance.unlawful_processing": _both("Behandlingen är olaglig men jag vill inte att uppgifterna raderas",
                                              "The processing is unlawful but I do not want the data erased"),
    "circumstance.legal_claims": _both("Jag behöver uppgifterna för ett rättsligt anspråk",
                                       "I need the data for a legal claim"),
    "circumstance.objection_pending": _both("Jag har invänt och väntar på besked",
                                            "I have objected and am waiting for an answer"),
    "field.processing": _both("Vad invänder du mot?", "What do you object to?"),
    "processing.marketing": _both("Marknadsföring", "Marketing"),
    "processing.profiling": _both("Profilering", "Profiling"),
    "processing.legitimate_interest": _both("Behandling på grund av berättigat intresse",
                                            "Processing based on legitimate interest"),
    "field.name": _both("Namn", "Name"),
    "field.email": _both("E-postadress", "Email address"),
    "field.company": _both("Företag", "Company"),
    "field.phone": _both("Telefon", "Phone"),
    "field.country": _both("Land (två bokstäver, t.ex. SE)", "Country (two letters, e.g. SE)"),
    # statuses and timeline
    "status.received": _both("Mottagen", "Received"),
    "status.identity_pending": _both(
        "Väntar på att du bekräftar din identitet",
        "Waiting for you to confirm who you are"),
    "status.in_progress": _both("Pågår", "In progress"),
    "status.awaiting_systems": _both("Våra system utför begäran", "Our systems are carrying it out"),
    "status.completed": _both("Klar", "Completed"),
    "status.rejected": _both("Avslagen", "Rejected"),
    "status.cancelled": _both("Avbruten", "Cancelled"),
    "status.closed_unverified": _both("Stängd: identiteten bekräftades inte", "Closed: identity was not confirmed"),
    "status.extended": _both("Tiden förlängdes", "Time extended"),
    # done
    "done.title": _both("Tack, vi har tagit emot det", "Thank you, we have received it"),
    "done.consents": _both(
        "Dina val är sparade. Det kan ta en liten stund innan alla system och den här sidan visar dem.",
                           "Your choices are saved. It may take a moment before every system and this page show them."),
    "done.nothing": _both(
        "Inget ändrades: dina val var redan sådana.",
        "Nothing changed: your choices were already so."),
    "done.request": _both("Din begäran ({right}) är mottagen. Vi svarar senast inom en månad och mejlar dig när den "
                          "är klar. Du kan följa den under Mina uppgifter.",
                          "Your request ({right}) has been received. We answer within one month at the latest and "
                          "email you when it is done. You can follow it under My data."),
    "done.back": _both("Tillbaka till mina uppgifter", "Back to my data"),
    # verify
    "verify.title": _both("Bekräfta att det är du", "Confirm that it is you"),
    "verify.intro": _both("Skriv koden med sex siffror från mejlet vi skickade. Koden gäller en begränsad tid.",
                          "Enter the six-digit code from the email we sent. The code is valid for a limited time."),
    "verify.code": _both("Kod", "Code"),
    "verify.button": _both("Bekräfta", "Confirm"),
    "verify.bad_format": _both("Koden är sex siffror.", "The code is six digits."),
    "verify.wrong": _both("Fel kod. Försök kvar: {left}.", "Wrong code. Attempts left: {left}."),
    "verify.expired": _both("Koden har gått ut. Om det går skickar vi en ny kod.",
                            "The code has expired. If possible we send a new code."),
    "verify.locked": _both("För många felaktiga försök. Kontakta oss så hjälper vi dig.",
                           "Too many wrong attempts. Contact us and we will help."),
    "verify.unusable": _both(
        "Koden kan inte användas för den här begäran.",
        "The code cannot be used for this request."),
    "verify.ok.title": _both("Tack, det var du", "Thank you, it was you"),
    "verify.ok.body": _both("Vi behandlar nu din begäran och svarar senast inom en månad.",
                            "We are now handling your request and answer within one month at the latest."),
    # sign-out
    "signedout.title": _both("Du är utloggad", "You are signed out"),
    "signedout.body": _both("Tack för besöket.", "Thank you for visiting."),
    "signedout.again": _both("Till startsidan", "To the start page"),
    # form problems
    "form.stale": _both("Formuläret är för gammalt. Ladda om sidan och försök igen.",
                        "The form is too old. Reload the page and try again."),
    "form.too_long": _both("En text är för lång.", "A text is too long."),
    "form.unknown_purpose": _both(
        "Formuläret innehöll ett val som inte finns.",
        "The form held a choice that does not exist."),
    "form.bad_choice": _both("Välj ja eller nej.", "Choose yes or no."),
    "form.missing.right": _both("Välj vilken rättighet du vill utöva.", "Choose which right to exercise."),
    "form.missing.format": _both("Välj ett format.", "Choose a format."),
    "form.missing.ground": _both("Välj varför uppgifterna ska raderas.", "Choose why the data should be erased."),
    "form.missing.circumstance": _both("Välj varför behandlingen ska begränsas.",
                                       "Choose why processing should be restricted."),
    "form.missing.processing": _both("Välj vad du invänder mot.", "Choose what you object to."),
    "form.missing.corrections": _both(
        "Fyll i minst en uppgift som ska rättas.",
        "Fill in at least one item to correct."),
    "form.missing.explanation": _both(
        "Förklara varför uppgifterna ska rättas.",
        "Explain why the data should be corrected."),
}

PURPOSE_TEXTS: M = {
    "purpose.service_delivery": _both("Leverera tjänsterna", "Delivering the services"),
    "purpose.payments": _both("Betalningar", "Payments"),
    "purpose.support": _both("Kundsupport", "Customer support"),
    "purpose.security": _both("Säkerhet", "Security"),
    "purpose.bookkeeping": _both("Bokföring", "Bookkeeping"),
    "purpose.service_improvement": _both("Förbättra tjänsterna", "Improving the services"),
    "purpose.personalization": _both("Anpassat innehåll", "Tailored content"),
    "purpose.analytics": _both("Användningsanalys", "Usage analytics"),
    "purpose.marketing_email": _both("Marknadsföring via e-post", "Marketing by email"),
    "purpose.third_party_marketing": _both("Marknadsföring från tredje part", "Marketing by third parties"),
    "purpose.partner_sharing": _both("Delning med partner", "Sharing with partners"),
    "purpose.group_sharing": _both("Delning inom IPCOM-koncernen", "Sharing within the IPCOM group"),
    "purpose.profiling": _both("Profilering", "Profiling"),
    "why.service_delivery": _both("För att ge dig de tjänster du registrerat dig för.",
                                  "To give you the services you registered for."),
    "why.payments": _both("För att ta betalt. Betalningsuppgifter används bara till betalningar.",
                          "To take payments. Payment data is used only for payments."),
    "why.support": _both("För att svara när du kontaktar oss.", "To answer when you contact us."),
    "why.security": _both("För att skydda tjänsterna och dina uppgifter mot missbruk.",
                          "To protect the services and your data against misuse."),
    "why.bookkeeping": _both("Bokföringslagen kräver att vi sparar verifikationer i 7 år.",
                             "The Swedish Bookkeeping Act makes us keep accounting records for 7 years."),
    "why.service_improvement": _both("För att rätta fel och göra tjänsterna bättre.",
                                     "To fix faults and make the services better."),
    "why.personalization": _both("För att visa innehåll som passar dig.", "To show content that suits you."),
    "why.analytics": _both("För att förstå hur tjänsterna används.", "To understand how the services are used."),
    "why.marketing_email": _both("För att mejla dig erbjudanden, seminarier och nyheter.",
                                 "To email you offers, seminars and news."),
    "why.third_party_marketing": _both("För att andra företag ska kunna marknadsföra sig till dig.",
                                       "So that other companies can market to you."),
    "why.partner_sharing": _both("För att dela dina kontaktuppgifter med våra partner.",
                                 "To share your contact details with our partners."),
    "why.group_sharing": _both("För att dela dina kontaktuppgifter med andra bolag i IPCOM-koncernen.",
                               "To share your contact details with other IPCOM group companies."),
    "why.profiling": _both("För att dra slutsatser om dina intressen ur hur du använder tjänsterna.",
                           "To infer your interests from how you use the services."),
    "basis.consent": _both("Ditt samtycke", "Your consent"),
    "basis.contract": _both("Avtal med dig", "Contract with you"),
    "basis.legal_obligation": _both("Rättslig förpliktelse", "Legal obligation"),
    "basis.legitimate_interest": _both("Vårt berättigade intresse (du kan invända)",
                                       "Our legitimate interest (you can object)"),
    "basis.none": _both("Ingen", "None"),
}

MESSAGES: M = {**PAGES, **PURPOSE_TEXTS, **SUMMARY_MESSAGES}

"""What the access report (`index.html` in the package) and the download page say, in Swedish and
English. One key, one text per language (privacy_runtime.pages.i18n.Catalogue checks both are there).
"""

from __future__ import annotations

REPORT_MESSAGES: dict[str, dict[str, str]] = {
    "report.title": {"sv": "Dina personuppgifter hos {controller}", "en": "Your personal data at {controller}"},
    "report.intro": {
        "sv": "Det här är en kopia av de personuppgifter vi har om dig (ärende {request_id}), tagen fram "
              "{generated}. Här kan du läsa vad vi har, varför, hur länge och vem som får ta del av det. "
              "Samma uppgifter finns maskinläsbara i filerna bredvid (JSON{csv}).",
        "en": "This is a copy of the personal data we hold about you (case {request_id}), prepared "
              "{generated}. Here you can read what we hold, why, for how long and who receives it. The "
              "same data is in the files beside this one, machine-readable (JSON{csv}).",
    },
    "report.csv": {"sv": " och CSV", "en": " and CSV"},
    "report.received": {"sv": "Din begäran kom in {received}.", "en": "We received your request {received}."},
    "report.contents": {"sv": "Innehåll", "en": "Contents"},
    "report.who": {"sv": "Vilka vi är", "en": "Who we are"},
    "report.who.text": {
        "sv": "{name}, en del av {group}-koncernen, är personuppgiftsansvarig för dina personuppgifter.",
        "en": "{name}, part of the {group} group, is the controller of your personal data.",
    },
    "report.who.contact": {"sv": "Frågor om dina personuppgifter:", "en": "Questions about your personal data:"},
    "report.who.authority": {"sv": "Tillsynsmyndighet:", "en": "Supervisory authority:"},
    "report.held.none": {"sv": "Det här systemet har inga uppgifter om dig.",
                         "en": "This system holds no data about you."},
    "report.held.data": {"sv": "Uppgifterna", "en": "The data"},
    "report.held.where": {"sv": "Uppgift", "en": "Item"},
    "report.held.value": {"sv": "Värde", "en": "Value"},
    "report.held.more": {"sv": "… och {count} uppgifter till, som finns i filerna bredvid den här.",
                         "en": "… and {count} more items, in the files beside this one."},
    "report.purposes": {"sv": "Varför vi behandlar uppgifterna", "en": "Why we process the data"},
    "report.purposes.basis": {"sv": "Rättslig grund", "en": "Legal basis"},
    "report.purposes.systems": {"sv": "Var", "en": "Where"},
    "report.recipients": {"sv": "Vilka som tar emot uppgifterna", "en": "Who receives the data"},
    "report.recipients.text": {
        "sv": "De här systemen och mottagarna får uppgifter om dig, bara för de ändamål som anges. Partner och "
              "IPCOM-koncernen får dem bara med ditt samtycke där lagen kräver det.",
        "en": "These systems and recipients receive data about you, only for the purposes named. Partners and "
              "the IPCOM group receive it only with your consent where the law requires it.",
    },
    "report.source": {"sv": "Var uppgifterna kommer ifrån", "en": "Where the data came from"},
    "report.source.text": {
        "sv": "Uppgifterna har du själv lämnat, eller den partner du registrerade dig via, och en del uppstår "
              "när du använder våra tjänster (användning, enhet och loggar).",
        "en": "You gave us the data yourself, or the partner you registered through did, and some of it "
              "arises from your use of our services (usage, device and logs).",
    },
    "report.source.registration": {"sv": "Registrering via {source}, {when}",
                                   "en": "Registered through {source}, {when}"},
    "report.consents": {"sv": "Dina samtycken, från det senaste", "en": "Your consents, latest first"},
    "report.consents.none": {"sv": "Vi har inga ändringar av samtycken registrerade för dig.",
                             "en": "We have no consent changes recorded for you."},
    "report.consents.when": {"sv": "När", "en": "When"},
    "report.consents.what": {"sv": "Ändamål", "en": "Purpose"},
    "report.consents.choice": {"sv": "Val", "en": "Choice"},
    "report.consents.how": {"sv": "Hur", "en": "How"},
    "report.consents.policy": {"sv": "Policyversion", "en": "Policy version"},
    "report.consents.granted": {"sv": "samtycke lämnat", "en": "consent given"},
    "report.consents.withdrawn": {"sv": "samtycke återkallat", "en": "consent withdrawn"},
    "report.automated": {"sv": "Automatiserade beslut", "en": "Automated decisions"},
    "report.automated.text": {
        "sv": "Vi fattar inga beslut om dig som enbart grundar sig på automatiserad behandling, profilering "
              "inräknad.",
        "en": "We make no decisions about you based solely on automated processing, including profiling.",
    },
    "report.rights": {"sv": "Dina rättigheter", "en": "Your rights"},
    "report.rights.text": {
        "sv": "Du kan begära rättelse, radering eller begränsning av dina uppgifter, invända mot behandlingen "
              "och få ut dem i ett maskinläsbart format. Du kan också klaga hos Integritetsskyddsmyndigheten "
              "(IMY), www.imy.se.",
        "en": "You may ask for rectification, erasure or restriction of your data, object to its processing, "
              "and receive it in a machine-readable format. You may also complain to the Swedish Authority "
              "for Privacy Protection (IMY), www.imy.se.",
    },
}

EXPORT_PAGE_MESSAGES: dict[str, dict[str, str]] = {
    "export.title": {"sv": "Hämta dina personuppgifter", "en": "Download your personal data"},
    "export.what.access": {
        "sv": "Här finns kopian av dina personuppgifter (registerutdrag) som du bad om, ärende {request_id}.",
        "en": "Here is the copy of your personal data (access request) you asked for, case {request_id}.",
    },
    "export.what.portability": {
        "sv": "Här finns dina personuppgifter i maskinläsbart format (dataportabilitet) som du bad om, "
              "ärende {request_id}.",
        "en": "Here is your personal data in a machine-readable format (data portability) you asked for, "
              "case {request_id}.",
    },
    "export.contents": {
        "sv": "Du får en zip-fil på ungefär {size}. Öppna index.html i den för att läsa vad vi har om dig, "
              "varför, hur länge och vem som får ta del av det. Bredvid finns samma uppgifter maskinläsbart "
              "({formats}).",
        "en": "You get a zip file of about {size}. Open index.html in it to read what we hold about you, why, "
              "for how long and who receives it. Beside it is the same data, machine-readable ({formats}).",
    },
    "export.formats.json": {"sv": "JSON", "en": "JSON"},
    "export.formats.csv": {"sv": "JSON och CSV", "en": "JSON and CSV"},
    "export.expires": {"sv": "Länken gäller till", "en": "The link is valid until"},
    "export.left": {"sv": "Hämtningar kvar", "en": "Downloads left"},
    "export.personal": {
        "sv": "Länken är personlig. Dela den inte med någon. Varje tryck på knappen räknas som en hämtning; "
              "att bara öppna den här sidan gör det inte.",
        "en": "The link is personal. Do not share it. Each press of the button counts as a download; just "
              "opening this page does not.",
    },
    "export.button": {"sv": "Hämta zip-filen", "en": "Download the zip file"},
    "export.more": {
        "sv": "Vill du se eller ändra vad vi gör med dina uppgifter? Gå till integritetscentret.",
        "en": "Want to see or change what we do with your data? Go to the privacy center.",
    },
    "export.more.link": {"sv": "Till integritetscentret", "en": "To the privacy center"},
    "export.unknown": {
        "sv": "Länken känns inte igen. Kontrollera att du har kopierat hela länken från e-postmeddelandet.",
        "en": "The link is not recognised. Check that you copied the whole link from the email.",
    },
    "export.expired": {
        "sv": "Länken har gått ut. Gör en ny begäran, så tar vi fram en ny kopia.",
        "en": "The link has expired. Make a new request and we will prepare a new copy.",
    },
    "export.used_up": {
        "sv": "Kopian har redan hämtats så många gånger som länken tillåter. Gör en ny begäran, så tar vi fram "
              "en ny kopia.",
        "en": "The copy has already been downloaded as many times as the link allows. Make a new request and "
              "we will prepare a new copy.",
    },
    "export.gone": {
        "sv": "Kopian finns inte längre.",
        "en": "The copy is no longer available.",
    },
}

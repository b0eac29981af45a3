"""Small issue documents used across the tests; one of each section kind."""

EVERY_KIND = """\
title: Ceasefire broken again
date: 2026-11-27
subject: "Weekly: the ceasefire is broken again"
preheader: A statement, news from Congress and world capitals, and the photos of the week
kicker: Breaking
sections:
  - kind: headlines
    items:
      - text: Lead headline one
        url: https://news.example.com/lead-1
      - text: Lead headline two
  - kind: statement
    title: Statement of the president
    author: Ana Pereira
    role: President
    body: |
      First paragraph with *emphasis* and a [source](https://www.example.org/source).

      Second paragraph.
    actions:
      intro: "The following actions must be taken:"
      items:
        - Convene the Security Council
        - Suspend all military assistance
  - kind: news
    title: News
    stories:
      - headline: Shelling resumes near the border
        source: Reuters
        summary: Summary of the *story*.
        quote: {text: "We will not leave", attribution: "A resident"}
        bullets: [Two villages evacuated, Schools closed]
        image:
          src: https://images.example.org/2026/11/border.jpg
          alt: Smoke rising over a village
          caption: The village on Tuesday.
          credit: AP
        links:
          - url: https://news.example.com/shelling
  - kind: congress
    title: U.S. Congress
    stories:
      - headline: Senators call for sanctions
        links:
          - url: https://senate.example.gov/sanctions
            label: Read The Full Statement
  - kind: world
    title: World Leaders, NGOs
    stories:
      - headline: The ICRC asks for access
        links: [{url: "https://www.example.org/icrc"}]
  - kind: photos
    photos:
      - src: https://images.example.org/2026/11/march.jpg
        alt: Marchers holding candles
        caption: A vigil in the capital.
        credit: Reuters
  - kind: figure
    value: 8
    text: times the ceasefire was violated this week
  - kind: opeds
    items:
      - title: What the West owes the valley
        author: Lena Ortiz
        outlet: Time
        excerpt: An excerpt of the op-ed.
        url: https://opinion.example.com/owes
  - kind: testimonies
    items:
      - quote: We left with nothing
        speaker: Maro
        description: a teacher from the valley
"""

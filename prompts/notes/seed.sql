-- seed.sql — the demo notebook of Alex Morgan (the same fictional person as in Mail).
--
-- figment runs this once to build var/apps/notes.db. Everything here is fictional.
--
-- Conventions (prompt.md relies on them):
--   * body is Markdown written by the user (lists, task lists, emphasis).
--   * tags is a comma-separated list of lowercase words without spaces, e.g. 'home,recipes';
--     match one tag with (',' || tags || ',') LIKE '%,home,%'.
--   * created_at and updated_at are ISO-8601 local time, 'YYYY-MM-DDTHH:MM:SS'; the
--     demo's "today" is Friday 2026-11-13.
--   * No comments inside CREATE statements: their text is copied into the prompt.

CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '',
  pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE INDEX notes_pinned_updated ON notes(pinned, updated_at);

INSERT INTO notes (id, title, tags, pinned, created_at, updated_at, body) VALUES

(1, 'Groceries', 'home', 1, '2026-11-08T18:20:00', '2026-11-12T19:05:00',
'- [ ] fresh cranberries (2 bags, for Thanksgiving)
- [ ] oranges
- [ ] sugar
- [x] coffee beans
- [x] oat milk
- [ ] dish soap'),

(2, 'Lisbon trip, 4-13 December', 'travel', 1, '2026-10-29T21:10:00', '2026-11-04T12:02:00',
'Flights booked: SkyTrips, reference SKT7Q4XZ. Out Fri 4 Dec 18:55, back Sun 13 Dec.

**To do**
- [x] book flights
- [ ] book a place to stay in Alfama or Graça
- [ ] travel insurance
- [ ] ask Nora about the day trip to Sintra

**Ideas**
- tram 28 early in the morning, before the crowds
- pastries in Belém
- a fado evening
- one day at the beach in Cascais if the weather holds'),

(3, 'Offsite agenda ideas', 'work', 0, '2026-10-30T14:00:00', '2026-11-02T17:45:00',
'Goals: agree on Q1 priorities, celebrate the checkout launch.

- Retro on 2026: what worked, what did not
- Jonas: onboarding research findings
- Priya: technical debt, what we stop doing
- Team activity: cooking class (budget about $1,700 left, per Tom)

Keep the second day short: people travel back in the afternoon.'),

(4, 'Books to read', 'reading', 0, '2026-09-12T09:30:00', '2026-10-28T15:00:00',
'1. *A Field Guide to Northern Mosses* (on hold at the library, ready!)
2. *The Quiet Ledger*, the novel Mom recommended
3. *Shipping Small*, the product book from the newsletter
4. Something in Portuguese for the trip, even a children''s book'),

(5, '1:1 with Maria', 'work', 0, '2026-11-09T08:50:00', '2026-11-09T08:50:00',
'Talking points:

- Saved payment methods: on track for the freeze, two engineers until 27 Nov
- EU autocomplete: still waiting on the legal review, ask Maria to escalate?
- My goals for next year: lead the pricing project?
- The recruiter call: not mentioning it'),

(6, 'Cranberry sauce', 'recipes,home', 0, '2025-11-20T20:00:00', '2026-10-21T09:00:00',
'Double batch for Thanksgiving.

- 2 bags fresh cranberries (680 g)
- 1 cup sugar
- 1 cup orange juice, zest of 1 orange
- a pinch of cinnamon

Simmer about 10 minutes until the berries pop. Cool, then refrigerate overnight. Keeps a week.'),

(7, 'Apartment: things to fix', 'home', 0, '2026-10-05T19:30:00', '2026-11-10T08:30:00',
'- [ ] kitchen window does not close (maintenance: Thu 12 Nov, 9-12)
- [x] replace the hallway bulb
- [ ] bathroom fan is noisy
- [ ] sign page 4 of the lease renewal and send it back by 20 Nov'),

(8, 'Gift ideas', 'gifts', 0, '2026-10-18T22:15:00', '2026-11-01T10:40:00',
'- Mom: a good bread knife, or the pottery class she keeps mentioning
- Chris: board game for the kids (nothing with tiny pieces)
- Nora: the hiking map set for the northern trails
- Leo and Mia: books, see what they are reading this year'),

(9, 'Meeting rooms', 'work', 0, '2026-09-01T09:00:00', '2026-09-01T09:00:00',
'Rooms on the 3rd floor: *Birch* (8 people, screen), *Cedar* (4 people), *Maple* (phone booth).

Book rooms in the calendar; Maple cannot be booked.');

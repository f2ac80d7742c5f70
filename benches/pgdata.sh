# shellcheck shell=bash
# A throwaway PostgreSQL 15 cluster and the synthetic application database used by the
# benchmarks: shared by benches/compare.sh (a series of nightly plain dumps) and
# benches/postgres.sh (live nightly `pg_dump`s). Functions only: sourcing this file defines
# them and runs nothing.
#
#   source "$(dirname "$0")/pgdata.sh"
#
# The caller sets, before calling any of the functions:
#   PG_BIN          PostgreSQL 15 binaries (initdb, pg_ctl, psql, createdb, pgbench)
#   WORK            work dir; the cluster lives in $WORK/pg (must be writable by PG_RUN_AS)
#   LOGS            folder for initdb.log, pg_ctl.log, pgbench-init.log, schema.log, nights.log
#   SCALE           database size: pgbench scale SCALE plus 20,000 customers and 40,000
#                   orders per unit (one unit is ~30 MB of plain dump)
#   PG_FIRST_PORT   first of the 101 loopback TCP ports tried (PG_FIRST_PORT..+100)
#   PG_RUN_AS       as root, the OS user PostgreSQL runs as (it refuses to run as root);
#                   when no such user exists: created if PG_CREATE_USER=1, else `nobody`
#   PG_CREATE_USER  1 or 0, see PG_RUN_AS
#   PG_SAY_SOCKET   1 to name the socket dir in the "starting PostgreSQL" message, else 0
# and defines say MESSAGE (progress to stderr) and die MESSAGE (say and exit 1).
#
# Functions:
#   pg_start        initdb and start a fresh cluster in PGROOT=$WORK/pg (removed first), trust
#                   authentication, durability and autovacuum off; sets PGROOT, PG_PORT,
#                   PG_OS_USER, PGCONN (psql options: socket, port, user `bench`) and
#                   PGURL (postgresql://bench@127.0.0.1:PORT/app)
#   pg_stop         stop the cluster if pg_start started it (safe to call from an EXIT trap)
#   as_pg CMD...    run CMD as PG_OS_USER (as root) or as the caller
#   psql_file ARG...  psql on database `app`, quiet, stopping at the first error
#   write_sql       write the generator and churn SQL into $PGROOT/sql
#   load_database   write_sql, create `app`: pgbench -i -s SCALE, then the customers and
#                   orders tables (fixed seed, so every load is the same)
#   churn NIGHT     one day of traffic before night NIGHT (seeded by NIGHT): ~1% of rows
#                   changed, scattered, pgbench transactions, VACUUM ANALYZE
#   free_port       print a loopback TCP port that nothing listens on

# PostgreSQL refuses to run as root, so as root it runs as another OS user.
as_pg() {
  if [[ -n ${PG_OS_USER:-} ]]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

choose_pg_user() {
  PG_OS_USER=
  ((EUID == 0)) || return 0
  PG_OS_USER=$PG_RUN_AS
  id "$PG_OS_USER" >/dev/null 2>&1 && return 0
  if [[ $PG_CREATE_USER == 1 ]] &&
    useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$PG_OS_USER" 2>/dev/null; then
    return 0
  fi
  PG_OS_USER=nobody
}

# A TCP port on 127.0.0.1 that nothing listens on (a refused connection means free).
free_port() {
  local p last=$((PG_FIRST_PORT + 100))
  for p in $(seq "$PG_FIRST_PORT" "$last"); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "no free TCP port in $PG_FIRST_PORT-$last"
}

pg_start() {
  choose_pg_user
  PGROOT=$WORK/pg
  rm -rf "$PGROOT"
  mkdir -p "$PGROOT/sock" "$PGROOT/sql"
  [[ -n $PG_OS_USER ]] && chown -R "$PG_OS_USER:" "$PGROOT"
  as_pg test -w "$PGROOT" || die "user ${PG_OS_USER:-$(id -un)} cannot write $PGROOT (is WORK under a private dir?)"
  PG_PORT=$(free_port)
  PGCONN=(-h "$PGROOT/sock" -p "$PG_PORT" -U bench)
  # shellcheck disable=SC2034 # for the caller (benches/postgres.sh)
  PGURL=postgresql://bench@127.0.0.1:$PG_PORT/app
  local where="127.0.0.1:$PG_PORT"
  if [[ $PG_SAY_SOCKET == 1 ]]; then
    where+=" (socket in $PGROOT/sock)"
  fi
  say "starting PostgreSQL 15 as ${PG_OS_USER:-$(id -un)} on $where"
  as_pg "$PG_BIN/initdb" -D "$PGROOT/data" -U bench -A trust -E UTF8 --no-locale --no-sync \
    >"$LOGS/initdb.log" 2>&1 || die "initdb failed; see $LOGS/initdb.log"
  # Durability is irrelevant for a throwaway cluster and does not change what pg_dump prints.
  # Autovacuum is off so that the explicit nightly VACUUM makes the series reproducible.
  as_pg "$PG_BIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PGROOT/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off -c max_wal_size=4GB" \
    start >"$LOGS/pg_ctl.log" 2>&1 || die "pg_ctl start failed; see $PGROOT/server.log"
  PG_RUNNING=1
}

pg_stop() {
  ((${PG_RUNNING:-0})) || return 0
  say "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >>"$LOGS/pg_ctl.log" 2>&1 || true
  PG_RUNNING=0
}

psql_file() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "${PGCONN[@]}" -d app "$@"; }

# Generator helpers are pg_temp functions, so nothing of the generator appears in the dumps.
write_sql() {
  local d=$PGROOT/sql
  cat >"$d/helpers.sql" <<'SQL'
CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;
CREATE FUNCTION pg_temp.first_name() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT pg_temp.pick(ARRAY[
  'Olivia','Liam','Emma','Noah','Amelia','Oliver','Ava','Elijah','Sophia','Lucas','Mia','Levi',
  'Isabella','Mateo','Charlotte','Ezra','Luna','Asher','Harper','James','Evelyn','Leo','Aria',
  'Jack','Ella','Henry','Nora','Sebastian','Chloe','Hugo','Lea','Jonas','Marie','Finn','Sofia',
  'Paul','Hannah','Ben','Emilia','Louis','Lina','Elias','Ida','Noah','Clara','Felix','Anna',
  'Lukas','Mila','Maximilian','Yusuf','Aisha','Wei','Mei','Hiroshi','Yuki','Arjun','Priya',
  'Carlos','Lucia','Diego','Valentina','Mohammed','Fatima','Ivan','Olga','Kwame','Amara'])::text $$;
CREATE FUNCTION pg_temp.last_name() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT pg_temp.pick(ARRAY[
  'Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez',
  'Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin',
  'Lee','Perez','Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson',
  'Walker','Young','Allen','King','Wright','Scott','Torres','Nguyen','Hill','Flores','Green',
  'Müller','Schmidt','Schneider','Fischer','Weber','Meyer','Wagner','Becker','Schulz','Hoffmann',
  'Dubois','Moreau','Laurent','Rossi','Russo','Ferrari','Novak','Kowalski','Nowak','Jensen',
  'Nielsen','Hansen','Andersson','Johansson','Tanaka','Suzuki','Sato','Kim','Park','Chen','Wang'])::text $$;
-- city|country|locale|postcode pattern length
CREATE FUNCTION pg_temp.city() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT pg_temp.pick(ARRAY[
  'Berlin|DE|de-DE','Hamburg|DE|de-DE','München|DE|de-DE','Köln|DE|de-DE','Frankfurt am Main|DE|de-DE',
  'Paris|FR|fr-FR','Lyon|FR|fr-FR','Marseille|FR|fr-FR','Madrid|ES|es-ES','Barcelona|ES|es-ES',
  'Valencia|ES|es-ES','Rome|IT|it-IT','Milan|IT|it-IT','Amsterdam|NL|nl-NL','Rotterdam|NL|nl-NL',
  'Brussels|BE|fr-BE','Vienna|AT|de-AT','Zürich|CH|de-CH','Geneva|CH|fr-CH','Copenhagen|DK|da-DK',
  'Stockholm|SE|sv-SE','Oslo|NO|nb-NO','Helsinki|FI|fi-FI','Warsaw|PL|pl-PL','Prague|CZ|cs-CZ',
  'Dublin|IE|en-IE','London|GB|en-GB','Manchester|GB|en-GB','Edinburgh|GB|en-GB','Lisbon|PT|pt-PT',
  'New York|US|en-US','Chicago|US|en-US','Austin|US|en-US','Seattle|US|en-US','San Francisco|US|en-US',
  'Toronto|CA|en-CA','Montréal|CA|fr-CA','São Paulo|BR|pt-BR','Mexico City|MX|es-MX',
  'Tokyo|JP|ja-JP','Osaka|JP|ja-JP','Seoul|KR|ko-KR','Singapore|SG|en-SG','Sydney|AU|en-AU',
  'Melbourne|AU|en-AU','Auckland|NZ|en-NZ','Bangalore|IN|en-IN','Cape Town|ZA|en-ZA','Nairobi|KE|en-KE'])::text $$;
CREATE FUNCTION pg_temp.street() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT
  (1 + floor(random() * 240))::int || ' ' || pg_temp.pick(ARRAY['Oak','Maple','Cedar','Pine','Elm',
  'Lake','Hill','Park','Church','Mill','River','Station','Market','King','Queen','Victoria',
  'Garden','Forest','Meadow','Bridge','Castle','School','North','South','Harbour','Linden',
  'Birch','Willow','Spring','Sunset']) || ' ' ||
  pg_temp.pick(ARRAY['Street','Avenue','Road','Lane','Way','Drive','Close','Place','Court']) $$;
CREATE FUNCTION pg_temp.sentence(n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg(pg_temp.pick(ARRAY['please','deliver','to','the','back','door',
  'customer','prefers','email','contact','after','hours','gift','wrap','requested','called',
  'about','invoice','address','changed','VIP','account','discount','applied','refund',
  'issued','for','damaged','item','leave','with','neighbour','ring','twice','allergic',
  'to','peanuts','wants','paper','receipt','no','marketing','calls','corporate','order',
  'net','30','terms','reseller','fragile','handle','with','care']), ' ') || '.'
  FROM generate_series(1, n) $$;
CREATE FUNCTION pg_temp.product() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT
  pg_temp.pick(ARRAY['Organic','Classic','Deluxe','Compact','Wireless','Ergonomic','Vintage',
  'Premium','Eco','Smart','Portable','Handmade']) || ' ' ||
  pg_temp.pick(ARRAY['Coffee Beans','Desk Lamp','Backpack','Headphones','Water Bottle',
  'Notebook','Tea Set','Yoga Mat','Keyboard','Sneakers','Rain Jacket','Cutting Board',
  'Phone Case','Candle','Plant Pot','Wall Clock','Blender','Sunglasses']) $$;
SQL

  cat >"$d/insert_customers.sql" <<'SQL'
-- :n new customers, created over :'age' before now
INSERT INTO customers (first_name, last_name, email, phone, street, city, postcode, country,
                       created_at, updated_at, balance, notes, profile)
SELECT f, l,
       lower(translate(f || '.' || l, 'üöäéèàçãáíóúñ', 'uoaeeacaaioun')) ||
         CASE WHEN random() < 0.6 THEN (floor(random() * 100))::int::text ELSE '' END || '@' ||
         pg_temp.pick(ARRAY['gmail.com','outlook.com','yahoo.com','proton.me','icloud.com',
                             'gmx.de','web.de','orange.fr','example.org','fastmail.com']),
       '+' || (1 + floor(random() * 98))::int || ' ' || lpad((floor(random() * 1e9))::bigint::text, 9, '0'),
       pg_temp.street(),
       split_part(c, '|', 1),
       lpad((floor(random() * 99999))::int::text, 5, '0'),
       split_part(c, '|', 2),
       ts, ts + random() * (now() - ts),
       round((random() * 5000)::numeric, 2),
       CASE WHEN g % 3 = 0 THEN pg_temp.sentence(4 + g % 12) END,
       jsonb_build_object(
         'newsletter', random() < 0.3,
         'tier', pg_temp.pick(ARRAY['free','free','free','basic','basic','pro','enterprise']),
         'locale', split_part(c, '|', 3),
         'tags', to_jsonb(ARRAY(SELECT pg_temp.pick(ARRAY['early-adopter','b2b','reseller',
                   'churn-risk','vip','student','nonprofit','beta']) FROM generate_series(1, g % 3))),
         'last_login', now() - random() * interval '90 days',
         'signup_source', pg_temp.pick(ARRAY['web','ios','android','partner','import']))
FROM (SELECT g, pg_temp.first_name() AS f, pg_temp.last_name() AS l, pg_temp.city() AS c,
             now() - random() * :'age'::interval AS ts
      FROM generate_series(1, :n) g) s;
SQL

  cat >"$d/insert_orders.sql" <<'SQL'
-- :n orders of random existing customers, placed over :'age' before now
WITH pick AS (
  SELECT g, (SELECT id FROM customers WHERE id >= r ORDER BY id LIMIT 1) AS cid
  FROM (SELECT g, 1 + floor(random() * (SELECT max(id) FROM customers))::bigint AS r
        FROM generate_series(1, :n) g) s
), o AS (
  SELECT p.cid, now() - random() * :'age'::interval AS ts,
         (SELECT jsonb_agg(jsonb_build_object(
                   'sku', 'SKU-' || lpad((floor(random() * 20000))::int::text, 5, '0'),
                   'name', pg_temp.product(),
                   'qty', 1 + floor(random() * 4)::int,
                   'unit_price', round((2 + random() * 120)::numeric, 2)))
          FROM generate_series(1, 1 + p.g % 4)) AS items
  FROM pick p WHERE p.cid IS NOT NULL
)
INSERT INTO orders (customer_id, status, currency, total, items, shipping_address, created_at, updated_at)
SELECT o.cid,
       CASE WHEN o.ts < now() - interval '14 days'
            THEN pg_temp.pick(ARRAY['delivered','delivered','delivered','delivered','delivered',
                                    'delivered','delivered','delivered','returned','cancelled'])
            ELSE pg_temp.pick(ARRAY['pending','paid','shipped']) END,
       CASE c.country WHEN 'US' THEN 'USD' WHEN 'GB' THEN 'GBP' WHEN 'JP' THEN 'JPY' ELSE 'EUR' END,
       (SELECT sum((i->>'qty')::int * (i->>'unit_price')::numeric) FROM jsonb_array_elements(o.items) i),
       o.items,
       c.street || ', ' || c.postcode || ' ' || c.city || ', ' || c.country,
       o.ts, o.ts
FROM o JOIN customers c ON c.id = o.cid;
SQL

  cat >"$d/schema.sql" <<'SQL'
\ir helpers.sql
SELECT setseed(0.5);
CREATE TABLE customers (
  id          bigserial PRIMARY KEY,
  first_name  text NOT NULL,
  last_name   text NOT NULL,
  email       text NOT NULL,
  phone       text,
  street      text,
  city        text,
  postcode    text,
  country     char(2),
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  balance     numeric(12,2) NOT NULL,
  notes       text,
  profile     jsonb NOT NULL
);
CREATE INDEX ON customers (email);
CREATE TABLE orders (
  id               bigserial PRIMARY KEY,
  customer_id      bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  status           text NOT NULL,
  currency         char(3) NOT NULL,
  total            numeric(12,2),
  items            jsonb NOT NULL,
  shipping_address text,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL
);
CREATE INDEX ON orders (customer_id);
CREATE INDEX ON orders (status) WHERE status IN ('pending','paid','shipped');
\set n :n_customers
\set age '5 years'
\ir insert_customers.sql
\set n :n_orders
\set age '3 years'
\ir insert_orders.sql
VACUUM ANALYZE;
SQL

  # One night of an application's life: ~1% of customers touched, orders moving through their
  # states, a few erasures and sign-ups, new orders. Updated rows get new tuple positions
  # (after the nightly VACUUM, into freed space), so the changes are scattered through the
  # dump, as in production.
  cat >"$d/night.sql" <<'SQL'
\ir helpers.sql
SELECT setseed(:seed / 1000.0);
UPDATE customers
   SET updated_at = now(),
       balance = round(balance + (random() * 200 - 100)::numeric, 2),
       profile = jsonb_set(profile, '{last_login}', to_jsonb(now() - random() * interval '20 hours'))
 WHERE id IN (SELECT 1 + floor(random() * (SELECT max(id) FROM customers))::bigint
                FROM generate_series(1, :n_touch));
UPDATE customers
   SET street = pg_temp.street(), city = split_part(pg_temp.city(), '|', 1),
       postcode = lpad((floor(random() * 99999))::int::text, 5, '0'), updated_at = now()
 WHERE id IN (SELECT 1 + floor(random() * (SELECT max(id) FROM customers))::bigint
                FROM generate_series(1, :n_move));
UPDATE orders
   SET status = CASE status WHEN 'pending' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE 'delivered' END,
       updated_at = now()
 WHERE status IN ('pending', 'paid', 'shipped') AND random() < 0.7;
DELETE FROM customers
 WHERE id IN (SELECT 1 + floor(random() * (SELECT max(id) FROM customers))::bigint
                FROM generate_series(1, :n_erase));
\set n :n_signup
\set age '1 day'
\ir insert_customers.sql
\set n :n_new_orders
\set age '1 day'
\ir insert_orders.sql
SQL
}

# A fresh database `app` in the running cluster, the same on every load (fixed seeds).
load_database() {
  write_sql
  as_pg "$PG_BIN/createdb" "${PGCONN[@]}" app
  say "loading the database (pgbench -i -s $SCALE, $((20000 * SCALE)) customers, $((40000 * SCALE)) orders)"
  as_pg "$PG_BIN/pgbench" "${PGCONN[@]}" -i -q -s "$SCALE" app >"$LOGS/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed; see $LOGS/pgbench-init.log"
  psql_file -v n_customers=$((20000 * SCALE)) -v n_orders=$((40000 * SCALE)) \
    -f "$PGROOT/sql/schema.sql" >"$LOGS/schema.log" 2>&1 || die "schema load failed; see $LOGS/schema.log"
}

# churn NIGHT: the day's traffic before night NIGHT: application churn (night.sql), then
# pgbench TPC-B-like transactions (each updates one of the 100,000*SCALE accounts, so ~1% of
# them) and the nightly VACUUM.
churn() {
  local night=$1
  psql_file -v seed="$night" -v n_touch=$((200 * SCALE)) -v n_move=$((20 * SCALE)) \
    -v n_erase=$((20 * SCALE)) -v n_signup=$((40 * SCALE)) -v n_new_orders=$((400 * SCALE)) \
    -f "$PGROOT/sql/night.sql" >>"$LOGS/nights.log" 2>&1 || die "night $night failed; see $LOGS/nights.log"
  as_pg "$PG_BIN/pgbench" "${PGCONN[@]}" -n -c 2 -j 2 -t $((500 * SCALE)) \
    --random-seed="$night" app >>"$LOGS/nights.log" 2>&1 || die "pgbench failed; see $LOGS/nights.log"
  psql_file -c 'VACUUM ANALYZE' >>"$LOGS/nights.log" 2>&1
}

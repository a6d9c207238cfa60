//! The manual that `promo-gateway --help` and each subcommand's `--help` print after the
//! options (clap's `after_long_help`; `-h` prints the short form).

pub const MAIN: &str = "\
Commands:
  serve          the HTTP API (also what runs without a subcommand)
  check-config   check the config, credentials and campaign mappings; serve nothing
  sync FILE      deliver a CSV or NDJSON file of codes, as one sync job, in this process
  mirror         deliver a campaign's codes from the ledger to upstreams that lack them
  sandbox        simulated vendors alone: each create call judged by its vendor's document

Examples:
  promo-gateway --sandbox          serve, every upstream pointed at simulated vendors
  promo-gateway --sandbox sync examples/codes.csv --campaign example
                                   a sync job against simulated vendors, on a throwaway ledger
  promo-gateway --config /etc/promo-gateway/config.toml check-config
  promo-gateway serve --listen 127.0.0.1:8080
  PROMO_GW_KEY_CRM=... promo-gateway serve --listen 0.0.0.0:8080
  promo-gateway sync codes.csv --campaign spring --targets loop,partnero
  promo-gateway mirror --campaign spring --to limio-v3
  promo-gateway revoke --campaign spring --codes LEAKED-1,LEAKED-2 --delete

Files:
  config.toml    listen address, gateway API keys, ledger path, mappings directory, upstreams.
                 It holds no secret: credentials are named by environment variable.
  mappings/      one <campaign>.toml a campaign: the parent object on each upstream.
  the ledger     SQLite file (ledger.path), with a .db.lock beside it: one process a ledger.

Environment:
  each upstream's credential variables   named by upstreams.NAME.auth in config.toml
                                         (e.g. LOOP_API_TOKEN); unset: that upstream is
                                         unconfigured, the gateway still starts
  each gateway key's key_env variable    named by [[server.api_keys]]; unset: start-up refuses
  RUST_LOG                               log filter (default info; warn for sync and mirror)
  NO_COLOR                               plain progress output

Sandbox:
  --sandbox means the same for every command that meets vendors: serve, sync, mirror and
  check-config run against simulated vendors in this process (serve: on 127.0.0.1:8081; sync and
  mirror: a free loopback port; --sandbox-listen ADDR moves them), with the sandbox's own
  credentials and a ledger of the run's own, deleted at exit. No real vendor is called and the
  configured ledger is not opened. A flag a command cannot honour is refused (exit 1).

Gateway authentication:
  Clients send `Authorization: Bearer <key>`. Keys and their scopes (promo-codes:write,
  promo-codes:read, sync-jobs:write, sync-jobs:read, metrics:read) are listed in
  [[server.api_keys]]. Without keys the API is open and `serve` refuses any listen address
  that is not loopback.

Exit status:
  0  success (serve: stopped cleanly; check-config: no problem; sync/mirror: every code
     delivered; revoke: every code revoked, or never delivered, on every target)
  1  error: a bad config or mapping, a missing key variable, a port in use, a refused job,
     or problems reported by check-config
  2  sync/mirror/revoke: the job ended with codes not delivered (revoke: not revoked); see its
     summary
";

pub const SERVE: &str = "\
Serves the HTTP API (POST /v1/promo-codes, /v1/sync-jobs, GET /health, ...) until SIGTERM or
Ctrl-C. Prints `listening on ADDR` on stdout once it accepts connections (port 0 picks one).
Creates and sync jobs a previous stop interrupted are resumed first.

Refuses to start when the address is not loopback and no [[server.api_keys]] is configured,
or when a key's key_env variable is unset.

With --sandbox, simulated vendors start in the same process (on --sandbox-listen, default
127.0.0.1:8081) and every upstream's calls go to them, with sandbox credentials (no environment
variable is needed) and a ledger of the run's own, deleted at exit; no real vendor is called.
GET /health shows each upstream's `sandbox` base URL.

Examples:
  promo-gateway serve
  promo-gateway serve --sandbox
  promo-gateway --config prod.toml serve --listen 0.0.0.0:8080
";

pub const SANDBOX: &str = "\
Serves simulated vendors at http://ADDR/<vendor> followed by the vendor's own path
(/spacebring/discounts/promocodes/v1, /partnero/v1/promotion-codes,
/moltin/v2/promotions/{id}/codes, /limio/objects/limio/promo_codes_v2 and _v3,
/loop/v1/admin/promos), each vendor's documented revoke call (Spacebring's archive, Partnero's
and Moltin's deletes, Limio v2's update and delete), OAuth2 token endpoints at
/<vendor>/oauth2/token, and per vendor:
  GET, DELETE /<vendor>/_sandbox/codes    the codes it holds (every account); empty them
  GET /<vendor>/_sandbox/refusals         the requests it refused, each violation listed
  POST /<vendor>/_sandbox/faults          with x-sandbox-fault: the vendor's next answer
A request with `x-sandbox-fault: 429;retry-after=2 | 503 | timeout | reset` gets that fault.
Each request is judged as its vendor's document says (a simulation: real vendors may accept or
refuse more). Prints `listening on ADDR` on stdout once it accepts connections.

Examples:
  promo-gateway sandbox
  promo-gateway sandbox --listen 127.0.0.1:0 --rate-limit 100 --rate-limit moltin=5
";

pub const CHECK_CONFIG: &str = "\
Validates config.toml and every mapping file, then prints one block per upstream: whether its
credential variables are set (names only, never values), and for each campaign that maps it,
whether the mapping gives its vendor every key it needs (a sample code is translated, nothing
is sent). Opens no ledger and calls no vendor, so it can run beside a serving gateway.

With --sandbox, checks the configuration as a sandboxed run uses it: every upstream pointed at
its simulated vendor, with the sandbox's credentials (no variable needs to be set).

Exit status: 0 when no problem was found, 1 otherwise (each problem line says PROBLEM).

Example:
  promo-gateway --config /etc/promo-gateway/config.toml check-config
";

pub const SYNC: &str = "\
Runs one sync job in this process, with a progress bar per target on stderr and a summary on
stdout: a table per target and state, then for each state that is not a success how many, why
(grouped by reason, with the first codes each struck), and how to list them all. Ctrl-C cancels
the job cleanly. Exit status 2 when any code did not end on its vendor.

Examples:
  promo-gateway --sandbox sync examples/codes.csv --campaign example
  promo-gateway sync codes.csv --campaign spring
  promo-gateway sync codes.ndjson --campaign spring --targets loop --on-unsupported skip_field
";

pub const REVOKE: &str = "\
Revokes a campaign's codes at each target where the ledger holds them, as POST
/v1/promo-codes/{code}/revoke does for one (Moltin in bulk calls of at most 50 codes): the codes
are marked revoked before any call, and nothing sends them again. Exit status 2 when any code
did not end revoked (or was never delivered) on a target.

Example:
  promo-gateway revoke --campaign spring --codes LEAKED-1,LEAKED-2 --delete
";

pub const MIRROR: &str = "\
Delivers every code the ledger holds for a campaign to the named upstreams where it is missing.
Nothing missing (or no code yet) is \"nothing to mirror\", exit 0. Exit status 2 when any code did
not end on its vendor.

Example:
  promo-gateway mirror --campaign spring --to limio-v2,limio-v3
";

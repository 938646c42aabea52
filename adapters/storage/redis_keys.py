"""Every Redis key the pipeline uses, built in one place: `RedisKeys`.

Layout, for the prefix `dcb` (`{a}` an account, `{p}` a platform, `{k}` a profile key,
`{n}` a lock name, that is an identifier `kind:value` or a profile key):

    dcb:events                      stream of queued events (all accounts), one group
    dcb:held                        hash entry id -> JSON {owner, account, ticket, locks}
    dcb:waiting                     sorted set of entry ids waiting for a lock, by ticket
    dcb:tickets                     counter: the order in which entries were first read
    dcb:attempts                    hash entry id -> times handed out by `claim`
    dcb:accounts                    set of accounts seen
    dcb:dead_letters                stream of dead letters (all accounts)
    dcb:oauth_grants                hash account -> JSON grant (tokens encrypted)
    dcb:oauth_state:{s}             JSON {expires_at, verifier} with a TTL: an OAuth state
                                    not yet used (its PKCE verifier encrypted)
    dcb:{a}:queued                  counter of the account's queued events
    dcb:{a}:dedup:{key}             "1" with a TTL of `DEDUP_TTL`
    dcb:{a}:identities              hash identifier -> profile key
    dcb:{a}:links:{k}               set of the identifiers linked to profile k
    dcb:{a}:context:{k}             JSON context of profile k
    dcb:{a}:context_version:{k}     counter raised whenever k's context changes or is erased
    dcb:{a}:decision:{k}            JSON: k's cached pulled decision with its versions (a TTL)
    dcb:context_changed             pub/sub channel: [account, profile key, version] per change
    dcb:{a}:lock:{n}                hash {owner, n}: who processes events touching n
    dcb:{a}:platforms               set of platforms with writes for the account
    dcb:{a}:pending:{p}:{k}         hash: the pending write of k on p
    dcb:{a}:due:{p}                 sorted set of profile keys by due time
    dcb:{a}:written:{p}:{k}         hash: what p last got for k
    dcb:{a}:dispatch:{p}            string: the store instance that dispatches (a, p)
    dcb:{a}:pauses:{p}              sorted set scope -> paused until (epoch seconds)
    dcb:{a}:pause_reasons:{p}       hash scope -> reason
    dcb:{a}:rate:{p}:{name}         rate-limit windows

A few keys are only known inside a script, which builds them the same way: `claim`
appends to the prefix for `identities` and `lock` (a test checks it agrees with this
helper), `dispatch_lease` and `pending_summary` append a profile key to
`pending(account, platform, "")`.

No Redis Cluster hash tags: the target is one Redis (with a replica), and the scripts
touch keys of several accounts and the shared stream in one atomic step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Builds the pipeline's keys under `prefix` (no colon in the prefix)."""

    prefix: str = "dcb"

    def __post_init__(self) -> None:
        if not self.prefix or ":" in self.prefix:
            raise ValueError(f"prefix must be non-empty and without ':' (got {self.prefix!r})")

    # --- shared across accounts -------------------------------------------------------------

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def held(self) -> str:
        return f"{self.prefix}:held"

    @property
    def waiting(self) -> str:
        return f"{self.prefix}:waiting"

    @property
    def tickets(self) -> str:
        return f"{self.prefix}:tickets"

    @property
    def attempts(self) -> str:
        return f"{self.prefix}:attempts"

    @property
    def timers(self) -> str:
        """Sorted set: armed timers' hash keys, scored by when they fire."""
        return f"{self.prefix}:timers"

    def runtime(self, account: str, instance: str) -> str:
        """String with a TTL: one process's runtime report (pauses, last errors)."""
        return f"{self.account(account)}:runtime:{instance}"

    def timer(self, account: str, profile_key: str) -> str:
        """Hash: what a profile's armed timer queues when it fires (the enqueue fields)."""
        return f"{self.account(account)}:timer:{profile_key}"

    @property
    def context_changed(self) -> str:
        """Pub/sub channel: a hint, published by the scripts that change a context."""
        return f"{self.prefix}:context_changed"

    @property
    def accounts(self) -> str:
        return f"{self.prefix}:accounts"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead_letters"

    @property
    def oauth_grants(self) -> str:
        """Hash: account -> JSON OAuth grant, its tokens encrypted (`token_store`)."""
        return f"{self.prefix}:oauth_grants"

    def oauth_state(self, state: str) -> str:
        """String with a TTL: an OAuth `state` handed out and not yet used."""
        return f"{self.prefix}:oauth_state:{state}"

    # --- per account ------------------------------------------------------------------------

    def account(self, account: str) -> str:
        """The prefix of every key of one account (the scripts append to it)."""
        return f"{self.prefix}:{account}"

    def queued(self, account: str) -> str:
        return f"{self.account(account)}:queued"

    def dedup(self, account: str, key: str) -> str:
        return f"{self.account(account)}:dedup:{key}"

    def identities(self, account: str) -> str:
        return f"{self.account(account)}:identities"

    def links(self, account: str, profile_key: str) -> str:
        return f"{self.account(account)}:links:{profile_key}"

    def context(self, account: str, profile_key: str) -> str:
        return f"{self.account(account)}:context:{profile_key}"

    def context_version(self, account: str, profile_key: str) -> str:
        return f"{self.account(account)}:context_version:{profile_key}"

    def decision(self, account: str, profile_key: str) -> str:
        return f"{self.account(account)}:decision:{profile_key}"

    def lock(self, account: str, name: str) -> str:
        return f"{self.account(account)}:lock:{name}"

    def platforms(self, account: str) -> str:
        return f"{self.account(account)}:platforms"

    def pending(self, account: str, platform: str, profile_key: str) -> str:
        return f"{self.account(account)}:pending:{platform}:{profile_key}"

    def due(self, account: str, platform: str) -> str:
        return f"{self.account(account)}:due:{platform}"

    def written(self, account: str, platform: str, profile_key: str) -> str:
        return f"{self.account(account)}:written:{platform}:{profile_key}"

    def dispatch(self, account: str, platform: str) -> str:
        return f"{self.account(account)}:dispatch:{platform}"

    def pauses(self, account: str, platform: str) -> str:
        return f"{self.account(account)}:pauses:{platform}"

    def pause_reasons(self, account: str, platform: str) -> str:
        return f"{self.account(account)}:pause_reasons:{platform}"

    def rate(self, account: str, platform: str, name: str) -> str:
        return f"{self.account(account)}:rate:{platform}:{name}"

"""Taking job ids out of Redis: the pop script, and the ids popped but not yet claimed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.ports import ReadyJob

Publish = Callable[[Sequence[ReadyJob]], Awaitable[int]]
"""Adds ready jobs' ids to Redis (ZADD NX); returns how many were not there."""

# Takes up to ARGV[1] ids across queues, always the best head among them: the lowest score
# (highest priority), and on equal scores the smallest id (the oldest, for UUIDv7), so that
# priority and then FIFO hold across queues too. The queue keys are ARGV[2] .. name; with
# no names given (ARGV[3] = 0), every queue in the set KEYS[1]. Names after the given ones
# are paused queues, left out. Returns a flat list: 1 if the epoch key KEYS[2] exists (Redis
# holds every ready id) else 0, then name, id, score, name, id, score, ...
# It computes keys from names, so it needs a single Redis (not Redis Cluster).
POP_BEST = """
local limit = tonumber(ARGV[1])
local key_prefix = ARGV[2]
local named = tonumber(ARGV[3])
local paused = {}
for index = 4 + named, #ARGV do paused[ARGV[index]] = true end
local names = {}
if named > 0 then
  for index = 4, 3 + named do names[#names + 1] = ARGV[index] end
else
  names = redis.call('SMEMBERS', KEYS[1])
end
local heads = {}
local function look(name)
  local head = redis.call('ZRANGE', key_prefix .. name, 0, 0, 'WITHSCORES')
  if head[1] then heads[name] = {head[1], tonumber(head[2])} else heads[name] = nil end
end
for _, name in ipairs(names) do
  if not paused[name] then look(name) end
end
local taken = {redis.call('EXISTS', KEYS[2])}
while #taken < 1 + 3 * limit do
  local best = nil
  for name, head in pairs(heads) do
    local current = best and heads[best]
    if not current or head[2] < current[2] or (head[2] == current[2] and head[1] < current[1]) then
      best = name
    end
  end
  if not best then break end
  local head = heads[best]
  redis.call('ZREM', key_prefix .. best, head[1])
  taken[#taken + 1] = best
  taken[#taken + 1] = head[1]
  taken[#taken + 1] = tostring(head[2])
  look(best)
end
return taken
"""


def pop_arguments(
    key_prefix: str, limit: int, wanted: frozenset[str], paused: frozenset[str]
) -> list[str | int]:
    return [limit, key_prefix, len(wanted), *sorted(wanted), *sorted(paused)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Popped:
    """A job id taken out of Redis, with what is needed to put it back."""

    queue: str
    job_id: str
    score: float

    @classmethod
    def of(cls, job: ReadyJob) -> Popped:
        return cls(queue=job.queue, job_id=job.id, score=score_of(job.priority))

    def ready_job(self) -> ReadyJob:
        return ReadyJob(self.job_id, self.queue, priority_of(self.score))

    @classmethod
    def from_script(cls, reply: Sequence[Any]) -> tuple[bool, list[Popped]]:
        """The pop script's reply: whether Redis is complete, and the ids it popped."""
        popped = [
            cls(queue=reply[index], job_id=reply[index + 1], score=float(reply[index + 2]))
            for index in range(1, len(reply), 3)
        ]
        return bool(reply[0]), popped


def score_of(priority: int) -> float:
    return -priority  # the lowest score pops first: the highest priority


def priority_of(score: float) -> int:
    return -int(score)


class PoppedIds:
    """Ids popped from Redis and not claimed yet: a blocking pop's catch, or the ids of a
    claim the store did not answer. The next claim for their queue takes them first."""

    def __init__(self) -> None:
        self._entries: list[Popped] = []

    def keep(self, entries: Sequence[Popped]) -> None:
        self._entries.extend(entries)

    def has(self, queues: frozenset[str]) -> bool:
        return any(_serves(queues, entry) for entry in self._entries)

    def take(self, queues: frozenset[str], limit: int) -> list[Popped]:
        taken: list[Popped] = []
        kept: list[Popped] = []
        for entry in self._entries:
            chosen = len(taken) < limit and _serves(queues, entry)
            (taken if chosen else kept).append(entry)
        self._entries = kept
        return taken

    def take_all(self) -> list[Popped]:
        entries, self._entries = self._entries, []
        return entries


def _serves(queues: frozenset[str], entry: Popped) -> bool:
    return not queues or entry.queue in queues

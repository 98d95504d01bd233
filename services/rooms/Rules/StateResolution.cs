using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;

namespace Conduit.Rooms.Rules;

/// <summary>
/// State resolution v2 (room versions 2-11, spec rooms/fragments/v2-state-res.md) and v2.1
/// (room version 12, spec rooms/v12.md "State resolution"; MSC4297): v2.1 starts the first
/// iterative auth checks from an empty state map and adds the conflicted state subgraph to the
/// full conflicted set.
/// State resolution v1 (room version 1) is not implemented: <see cref="Resolve"/> throws
/// <see cref="NotSupportedException"/> for it.
/// </summary>
public static class StateResolution
{
    private static readonly (string, string) CreateKey = ("m.room.create", "");
    private static readonly (string, string) PowerLevelsKey = ("m.room.power_levels", "");

    /// <summary>
    /// Resolves <paramref name="stateSets"/> (maps from (type, state_key) to event id) into one
    /// state map. <paramref name="fetchEvent"/> returns the full PDU of an event id, or null if it
    /// is not available; events that cannot be fetched are left out of the sorting and auth
    /// checks (they can still win as unconflicted state).
    /// </summary>
    public static Dictionary<(string, string), string> Resolve(
        RoomVersion version,
        IReadOnlyList<IReadOnlyDictionary<(string Type, string StateKey), string>> stateSets,
        Func<string, JsonObject?> fetchEvent)
    {
        ArgumentNullException.ThrowIfNull(version);
        ArgumentNullException.ThrowIfNull(stateSets);
        ArgumentNullException.ThrowIfNull(fetchEvent);
        if (version.StateResolution is not ("v2" or "v2.1"))
        {
            throw new NotSupportedException($"state resolution {version.StateResolution} (room version {version.Id}) is not implemented");
        }
        bool v21 = version.StateResolution == "v2.1";

        var resolver = new Resolver(version, fetchEvent);

        // Unconflicted state map and conflicted state set.
        var unconflicted = new Dictionary<(string, string), string>();
        var conflicted = new HashSet<string>(StringComparer.Ordinal);
        var allKeys = new HashSet<(string, string)>();
        foreach (var set in stateSets)
        {
            foreach (var key in set.Keys)
            {
                allKeys.Add(key);
            }
        }
        foreach (var key in allKeys)
        {
            var values = new HashSet<string>(StringComparer.Ordinal);
            bool inEvery = true;
            foreach (var set in stateSets)
            {
                if (set.TryGetValue(key, out var id))
                {
                    values.Add(id);
                }
                else
                {
                    inEvery = false;
                }
            }
            if (inEvery && values.Count == 1)
            {
                unconflicted[key] = values.First();
            }
            else
            {
                conflicted.UnionWith(values);
            }
        }
        if (conflicted.Count == 0)
        {
            return unconflicted;
        }

        // Auth difference: union minus intersection of the full auth chains of the state sets.
        HashSet<string>? union = null;
        HashSet<string>? intersection = null;
        foreach (var set in stateSets)
        {
            var chain = new HashSet<string>(StringComparer.Ordinal);
            foreach (var id in set.Values)
            {
                chain.UnionWith(resolver.AuthChain(id));
            }
            if (union is null)
            {
                union = new HashSet<string>(chain, StringComparer.Ordinal);
                intersection = new HashSet<string>(chain, StringComparer.Ordinal);
            }
            else
            {
                union.UnionWith(chain);
                intersection!.IntersectWith(chain);
            }
        }
        var fullConflicted = new HashSet<string>(conflicted, StringComparer.Ordinal);
        if (union is not null)
        {
            union.ExceptWith(intersection!);
            fullConflicted.UnionWith(union);
        }
        // v2.1: plus the conflicted state subgraph.
        if (v21)
        {
            fullConflicted.UnionWith(resolver.ConflictedSubgraph(conflicted));
        }
        // Events we cannot see take no part in sorting or auth checks.
        fullConflicted.RemoveWhere(id => resolver.Get(id) is null);

        // Step 1: power events and their auth chains within the full conflicted set.
        var powerSet = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in fullConflicted)
        {
            if (IsPowerEvent(resolver.Get(id)!))
            {
                powerSet.Add(id);
                foreach (var a in resolver.AuthChain(id))
                {
                    if (fullConflicted.Contains(a))
                    {
                        powerSet.Add(a);
                    }
                }
            }
        }
        var sortedPower = resolver.ReverseTopologicalPowerSort(powerSet);

        // Step 2: iterative auth checks from the unconflicted state map (v2) or an empty map (v2.1).
        var partial = v21
            ? new Dictionary<(string, string), string>()
            : new Dictionary<(string, string), string>(unconflicted);
        resolver.IterativeAuthChecks(partial, sortedPower);

        // Step 3: the rest, in mainline order based on the partially resolved power levels.
        var rest = fullConflicted.Where(id => !powerSet.Contains(id)).ToList();
        partial.TryGetValue(PowerLevelsKey, out var resolvedPl);
        var sortedRest = resolver.MainlineSort(rest, resolvedPl);

        // Step 4: iterative auth checks on the partial state.
        resolver.IterativeAuthChecks(partial, sortedRest);

        // Step 5: unconflicted state wins.
        foreach (var (key, id) in unconflicted)
        {
            partial[key] = id;
        }
        return partial;
    }

    /// <summary>
    /// Power events: power levels, join rules, and kicks/bans (leave or ban of someone other than
    /// the sender).
    /// </summary>
    public static bool IsPowerEvent(JsonObject pdu)
    {
        string? type = Str(pdu, "type");
        string? stateKey = Str(pdu, "state_key");
        if (stateKey is null)
        {
            return false;
        }
        if (type is "m.room.power_levels" or "m.room.join_rules")
        {
            return true;
        }
        if (type == "m.room.member" && pdu["content"] is JsonObject c && Str(c, "membership") is "leave" or "ban")
        {
            return Str(pdu, "sender") != stateKey;
        }
        return false;
    }

    private sealed class Resolver(RoomVersion version, Func<string, JsonObject?> fetchEvent)
    {
        private readonly Dictionary<string, JsonObject?> _events = new(StringComparer.Ordinal);
        private readonly Dictionary<string, HashSet<string>> _authChains = new(StringComparer.Ordinal);

        public JsonObject? Get(string id)
        {
            if (!_events.TryGetValue(id, out var ev))
            {
                ev = fetchEvent(id);
                _events[id] = ev;
            }
            return ev;
        }

        private List<string> AuthEvents(string id) =>
            Get(id) is { } ev ? EventAuth.AuthEventIds(ev) : [];

        /// <summary>The auth chain of an event: its auth events, recursively (not the event itself).</summary>
        public HashSet<string> AuthChain(string id)
        {
            if (_authChains.TryGetValue(id, out var cached))
            {
                return cached;
            }
            var chain = new HashSet<string>(StringComparer.Ordinal);
            var stack = new Stack<string>(AuthEvents(id));
            while (stack.Count > 0)
            {
                var a = stack.Pop();
                if (!chain.Add(a))
                {
                    continue;
                }
                if (_authChains.TryGetValue(a, out var sub))
                {
                    chain.UnionWith(sub);
                    continue;
                }
                foreach (var next in AuthEvents(a))
                {
                    stack.Push(next);
                }
            }
            _authChains[id] = chain;
            return chain;
        }

        /// <summary>
        /// v2.1 conflicted state subgraph: events on auth_events paths from one conflicted event
        /// to another (endpoints included).
        /// </summary>
        public HashSet<string> ConflictedSubgraph(HashSet<string> conflicted)
        {
            // Nodes to consider: the conflicted events and everything reachable from them.
            var nodes = new HashSet<string>(conflicted, StringComparer.Ordinal);
            foreach (var c in conflicted)
            {
                nodes.UnionWith(AuthChain(c));
            }
            // Reverse auth edges among those nodes.
            var citedBy = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var n in nodes)
            {
                foreach (var a in AuthEvents(n))
                {
                    if (nodes.Contains(a))
                    {
                        if (!citedBy.TryGetValue(a, out var list))
                        {
                            citedBy[a] = list = [];
                        }
                        list.Add(n);
                    }
                }
            }
            // Walking the reverse edges from the conflicted events marks every node with a path
            // of at least one auth edge to a conflicted event (iteratively: auth chains are deep).
            var reachesConflicted = new HashSet<string>(StringComparer.Ordinal);
            var queue = new Queue<string>(conflicted);
            while (queue.Count > 0)
            {
                var x = queue.Dequeue();
                foreach (var p in citedBy.GetValueOrDefault(x) ?? [])
                {
                    if (reachesConflicted.Add(p))
                    {
                        queue.Enqueue(p);
                    }
                }
            }
            // On a path between two conflicted events: reachable from one (or one itself) and
            // reaching another. A conflicted event is an endpoint if it reaches another or is
            // reached from another.
            var reachedFromConflicted = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in conflicted)
            {
                reachedFromConflicted.UnionWith(AuthChain(c));
            }
            var subgraph = new HashSet<string>(StringComparer.Ordinal);
            foreach (var n in nodes)
            {
                bool isConflicted = conflicted.Contains(n);
                bool reached = reachedFromConflicted.Contains(n);
                bool reaches = reachesConflicted.Contains(n);
                if ((reached && (reaches || isConflicted)) || (isConflicted && reaches))
                {
                    subgraph.Add(n);
                }
            }
            return subgraph;
        }

        /// <summary>The create event: from the auth events (v1-11) or from the room id (v12).</summary>
        private JsonObject? CreateFor(JsonObject ev)
        {
            if (version.RoomIdFromCreateEvent)
            {
                string? roomId = Str(ev, "room_id");
                return roomId is { Length: > 1 } ? Get("$" + roomId[1..]) : null;
            }
            foreach (var a in EventAuth.AuthEventIds(ev))
            {
                if (Get(a) is { } ae && Str(ae, "type") == "m.room.create" && Str(ae, "state_key") == "")
                {
                    return ae;
                }
            }
            return null;
        }

        private string? PowerLevelsAuthEvent(string id)
        {
            foreach (var a in AuthEvents(id))
            {
                if (Get(a) is { } ae && Str(ae, "type") == "m.room.power_levels" && Str(ae, "state_key") == "")
                {
                    return a;
                }
            }
            return null;
        }

        /// <summary>The sender's power level according to the event's own auth events.</summary>
        private long SenderPowerLevel(string id)
        {
            var ev = Get(id)!;
            string sender = Str(ev, "sender") ?? "";
            JsonObject? pl = PowerLevelsAuthEvent(id) is { } plId ? Get(plId) : null;
            JsonObject? create = Str(ev, "type") == "m.room.create" ? ev : CreateFor(ev);
            return PowerLevels.FromEvents(version, create, pl).UserLevel(sender);
        }

        private static long Ts(JsonObject ev) => ev["origin_server_ts"].TryGetInteger(out long ts) ? ts : 0;

        /// <summary>
        /// Kahn's algorithm over the auth DAG restricted to <paramref name="events"/>, picking the
        /// smallest candidate by (higher sender power first, then origin_server_ts, then event id).
        /// </summary>
        public List<string> ReverseTopologicalPowerSort(HashSet<string> events)
        {
            var keys = new Dictionary<string, (long NegPower, long Ts, string Id)>(StringComparer.Ordinal);
            var pendingAuth = new Dictionary<string, int>(StringComparer.Ordinal);
            var dependents = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var id in events)
            {
                long power = SenderPowerLevel(id);
                keys[id] = (power == long.MinValue ? long.MaxValue : -power, Ts(Get(id)!), id);
                int count = 0;
                foreach (var a in AuthEvents(id).Distinct(StringComparer.Ordinal))
                {
                    if (events.Contains(a))
                    {
                        count++;
                        if (!dependents.TryGetValue(a, out var list))
                        {
                            dependents[a] = list = [];
                        }
                        list.Add(id);
                    }
                }
                pendingAuth[id] = count;
            }
            var ready = new SortedSet<(long NegPower, long Ts, string Id)>(KeyComparer.Instance);
            foreach (var (id, count) in pendingAuth)
            {
                if (count == 0)
                {
                    ready.Add(keys[id]);
                }
            }
            var result = new List<string>(events.Count);
            while (ready.Count > 0)
            {
                var next = ready.Min;
                ready.Remove(next);
                result.Add(next.Id);
                if (dependents.TryGetValue(next.Id, out var deps))
                {
                    foreach (var d in deps)
                    {
                        if (--pendingAuth[d] == 0)
                        {
                            ready.Add(keys[d]);
                        }
                    }
                }
            }
            return result;
        }

        /// <summary>
        /// Mainline ordering based on the power levels event <paramref name="powerLevelsId"/>:
        /// events whose power-levels ancestry meets the mainline earlier (greater position, or none
        /// at all) come first; ties by origin_server_ts, then event id.
        /// </summary>
        public List<string> MainlineSort(List<string> events, string? powerLevelsId)
        {
            var mainline = new Dictionary<string, int>(StringComparer.Ordinal);
            var current = powerLevelsId;
            int index = 0;
            while (current is not null && Get(current) is not null && !mainline.ContainsKey(current))
            {
                mainline[current] = index++;
                current = PowerLevelsAuthEvent(current);
            }
            long Position(string id)
            {
                var seen = new HashSet<string>(StringComparer.Ordinal);
                var p = PowerLevelsAuthEvent(id);
                while (p is not null && seen.Add(p))
                {
                    if (mainline.TryGetValue(p, out int i))
                    {
                        return i;
                    }
                    p = PowerLevelsAuthEvent(p);
                }
                return long.MaxValue; // "infinity": not based on the mainline
            }
            var sortKeys = events.ToDictionary(id => id, id => (Pos: Position(id), Ts: Ts(Get(id)!)), StringComparer.Ordinal);
            var sorted = new List<string>(events);
            sorted.Sort((x, y) =>
            {
                var kx = sortKeys[x];
                var ky = sortKeys[y];
                int c = ky.Pos.CompareTo(kx.Pos); // greater position first
                if (c != 0)
                {
                    return c;
                }
                c = kx.Ts.CompareTo(ky.Ts);
                return c != 0 ? c : string.CompareOrdinal(x, y);
            });
            return sorted;
        }

        /// <summary>
        /// Applies each event to <paramref name="state"/> if it passes the auth rules against that
        /// state; keys the rules need but the state lacks come from the event's own auth events.
        /// </summary>
        public void IterativeAuthChecks(Dictionary<(string, string), string> state, List<string> events)
        {
            foreach (var id in events)
            {
                var ev = Get(id);
                if (ev is null || Str(ev, "state_key") is not { } stateKey || Str(ev, "type") is not { } type)
                {
                    continue;
                }
                var fromAuthEvents = new Dictionary<(string, string), JsonObject>();
                foreach (var a in EventAuth.AuthEventIds(ev))
                {
                    if (Get(a) is { } ae && Str(ae, "type") is { } at && Str(ae, "state_key") is { } ask)
                    {
                        fromAuthEvents[(at, ask)] = ae;
                    }
                }
                JsonObject? Lookup((string Type, string StateKey) key)
                {
                    if (state.TryGetValue(key, out var sid) && Get(sid) is { } se)
                    {
                        return se;
                    }
                    if (fromAuthEvents.TryGetValue(key, out var ae))
                    {
                        return ae;
                    }
                    // v12: the create event is never an auth event; the room id names it.
                    if (key == CreateKey && version.RoomIdFromCreateEvent)
                    {
                        return CreateFor(ev);
                    }
                    return null;
                }
                if (EventAuth.Check(ev, version, Lookup).Allowed)
                {
                    state[(type, stateKey)] = id;
                }
            }
        }
    }

    private sealed class KeyComparer : IComparer<(long NegPower, long Ts, string Id)>
    {
        public static readonly KeyComparer Instance = new();

        public int Compare((long NegPower, long Ts, string Id) x, (long NegPower, long Ts, string Id) y)
        {
            int c = x.NegPower.CompareTo(y.NegPower);
            if (c != 0)
            {
                return c;
            }
            c = x.Ts.CompareTo(y.Ts);
            return c != 0 ? c : string.CompareOrdinal(x.Id, y.Id);
        }
    }

    private static string? Str(JsonObject? obj, string key) => EventAuth.Str(obj, key);
}

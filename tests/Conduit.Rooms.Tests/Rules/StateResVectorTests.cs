using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests.Rules;

/// <summary>
/// Data-driven tests over every case in tests/vectors/state-res/cases.json (from ruma/ruma, MIT).
/// Per the file's <c>how</c>: each <c>batches</c> case resolves the fixture PDUs (a) one PDU at a
/// time following prev_events, (b) one file at a time feeding the previous result forward and
/// (c) all at once; each <c>state_maps</c> case resolves the listed state maps. Every result must
/// equal the state in snapshots/&lt;name&gt;@resolved_state.snap.
/// </summary>
public class StateResVectorTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "vectors", "state-res");

    private static readonly Lazy<JsonObject> Cases = new(() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "cases.json")))!.AsObject());

    public static IEnumerable<object[]> BatchCases() =>
        Cases.Value["batches"]!.AsObject().Select(kv => new object[] { kv.Key });

    public static IEnumerable<object[]> StateMapCases() =>
        Cases.Value["state_maps"]!.AsObject().Select(kv => new object[] { kv.Key });

    [Fact]
    public void Vector_file_has_no_unhandled_sections()
    {
        var handled = new HashSet<string> { "source", "how", "batches", "state_maps" };
        foreach (var (name, _) in Cases.Value)
        {
            Assert.Contains(name, handled);
        }
        Assert.NotEmpty(BatchCases());
        Assert.NotEmpty(StateMapCases());
        // Every snapshot belongs to a case.
        var names = BatchCases().Concat(StateMapCases()).Select(r => (string)r[0]).ToHashSet();
        foreach (var snap in Directory.GetFiles(Path.Combine(Root, "snapshots"), "*.snap"))
        {
            string name = Path.GetFileName(snap).Split('@')[0];
            Assert.Contains(name, names);
        }
    }

    [Theory]
    [MemberData(nameof(BatchCases))]
    public void Batches(string name)
    {
        var files = Cases.Value["batches"]![name]!.AsArray().Select(f => (string)f!).ToList();
        var batches = files.Select(f => LoadPdus(Path.Combine(Root, "fixtures", f))).ToList();
        var all = batches.SelectMany(b => b).ToList();
        var byId = all.ToDictionary(p => Id(p), StringComparer.Ordinal);
        var version = VersionOf(all);
        var expected = LoadSnapshot(name);
        JsonObject? Fetch(string id) => byId.GetValueOrDefault(id);

        var failures = new List<string>();

        // (a) one PDU at a time, following prev_events.
        var iterative = ResolveIteratively(version, all, Fetch);
        Compare("one PDU at a time", expected, iterative, failures);

        // (b) one file at a time, feeding the previous result forward.
        Dictionary<(string, string), string>? previous = null;
        foreach (var batch in batches)
        {
            var sets = new List<IReadOnlyDictionary<(string Type, string StateKey), string>>();
            if (previous is not null)
            {
                sets.Add(previous);
            }
            sets.AddRange(batch.Select(Singleton));
            previous = StateResolution.Resolve(version, sets, Fetch);
        }
        Compare("one file at a time", expected, previous!, failures);

        // (c) all at once.
        var atomic = StateResolution.Resolve(version, all.Select(Singleton).ToList(), Fetch);
        Compare("all at once", expected, atomic, failures);

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(StateMapCases))]
    public void StateMaps(string name)
    {
        var c = Cases.Value["state_maps"]![name]!.AsObject();
        var pdus = LoadPdus(Path.Combine(Root, "fixtures", (string)c["pdus"]!));
        var byId = pdus.ToDictionary(p => Id(p), StringComparer.Ordinal);
        var version = VersionOf(pdus);
        var sets = new List<IReadOnlyDictionary<(string Type, string StateKey), string>>();
        foreach (var file in c["states"]!.AsArray())
        {
            var ids = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "fixtures", (string)file!)))!.AsArray();
            var map = new Dictionary<(string Type, string StateKey), string>();
            foreach (var idNode in ids)
            {
                var pdu = byId[(string)idNode!];
                map[((string)pdu["type"]!, (string)pdu["state_key"]!)] = Id(pdu);
            }
            sets.Add(map);
        }
        var resolved = StateResolution.Resolve(version, sets, id => byId.GetValueOrDefault(id));
        var failures = new List<string>();
        Compare("state maps", LoadSnapshot(name), resolved, failures);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// The state after each PDU is the resolution of the state before it (the resolution of the
    /// states after its prev_events) with the state before it plus the PDU; the result is the
    /// resolution of the states after the leaves (PDUs no other PDU names in prev_events).
    /// </summary>
    private static Dictionary<(string, string), string> ResolveIteratively(
        RoomVersion version, List<JsonObject> pdus, Func<string, JsonObject?> fetch)
    {
        var children = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var pending = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = pdus.ToDictionary(p => Id(p), StringComparer.Ordinal);
        foreach (var pdu in pdus)
        {
            var prevs = Prevs(pdu);
            pending[Id(pdu)] = prevs.Count;
            foreach (var p in prevs)
            {
                Assert.True(byId.ContainsKey(p), $"{Id(pdu)} has unknown prev_event {p}");
                if (!children.TryGetValue(p, out var list))
                {
                    children[p] = list = [];
                }
                list.Add(Id(pdu));
            }
        }
        var stateAfter = new Dictionary<string, Dictionary<(string, string), string>>(StringComparer.Ordinal);
        var queue = new Queue<string>(pdus.Where(p => Prevs(p).Count == 0).Select(Id));
        while (queue.Count > 0)
        {
            var id = queue.Dequeue();
            var pdu = byId[id];
            var before = StateResolution.Resolve(
                version,
                Prevs(pdu).Select(p => (IReadOnlyDictionary<(string Type, string StateKey), string>)stateAfter[p]).ToList(),
                fetch);
            var proposed = new Dictionary<(string Type, string StateKey), string>(before.Select(kv => KeyValuePair.Create(((string Type, string StateKey))kv.Key, kv.Value)))
            {
                [((string)pdu["type"]!, (string)pdu["state_key"]!)] = id,
            };
            var beforeTyped = new Dictionary<(string Type, string StateKey), string>(before.Select(kv => KeyValuePair.Create(((string Type, string StateKey))kv.Key, kv.Value)));
            stateAfter[id] = StateResolution.Resolve(version, [beforeTyped, proposed], fetch);
            foreach (var child in children.GetValueOrDefault(id) ?? [])
            {
                if (--pending[child] == 0)
                {
                    queue.Enqueue(child);
                }
            }
        }
        Assert.True(stateAfter.Count == pdus.Count, "not every PDU got a state: prev_events do not form a DAG rooted at the create event");
        var leaves = pdus.Select(Id).Where(id => !children.ContainsKey(id))
            .Select(id => (IReadOnlyDictionary<(string Type, string StateKey), string>)new Dictionary<(string Type, string StateKey), string>(
                stateAfter[id].Select(kv => KeyValuePair.Create(((string Type, string StateKey))kv.Key, kv.Value))))
            .ToList();
        return StateResolution.Resolve(version, leaves, fetch);
    }

    private static void Compare(
        string how, Dictionary<(string, string), string> expected, Dictionary<(string, string), string> actual, List<string> failures)
    {
        foreach (var (key, id) in expected)
        {
            if (!actual.TryGetValue(key, out var got))
            {
                failures.Add($"{how}: missing {key} (expected {id})");
            }
            else if (got != id)
            {
                failures.Add($"{how}: {key} is {got}, expected {id}");
            }
        }
        foreach (var (key, id) in actual)
        {
            if (!expected.ContainsKey(key))
            {
                failures.Add($"{how}: unexpected {key} = {id}");
            }
        }
    }

    /// <summary>A .snap file: a YAML header between "---" lines, then a JSON array of state events.</summary>
    private static Dictionary<(string, string), string> LoadSnapshot(string name)
    {
        var lines = File.ReadAllLines(Path.Combine(Root, "snapshots", name + "@resolved_state.snap"));
        Assert.Equal("---", lines[0].Trim());
        int end = Array.FindIndex(lines, 1, l => l.Trim() == "---");
        Assert.True(end > 0, "snapshot has no closing --- line");
        var json = JsonNode.Parse(string.Join("\n", lines.Skip(end + 1)))!.AsArray();
        var state = new Dictionary<(string, string), string>();
        foreach (var e in json)
        {
            state[((string)e!["type"]!, (string)e["state_key"]!)] = (string)e["event_id"]!;
        }
        return state;
    }

    private static List<JsonObject> LoadPdus(string path) =>
        JsonNode.Parse(File.ReadAllText(path))!.AsArray().Select(n => n!.AsObject()).ToList();

    private static RoomVersion VersionOf(List<JsonObject> pdus)
    {
        var create = pdus.First(p => (string?)p["type"] == "m.room.create");
        var version = RoomVersion.Find((string)create["content"]!["room_version"]!);
        Assert.NotNull(version);
        return version;
    }

    private static string Id(JsonObject pdu) => (string)pdu["event_id"]!;

    private static List<string> Prevs(JsonObject pdu) =>
        pdu["prev_events"] is JsonArray a ? a.Select(n => (string)n!).ToList() : [];

    private static IReadOnlyDictionary<(string Type, string StateKey), string> Singleton(JsonObject pdu) =>
        new Dictionary<(string Type, string StateKey), string> { [((string)pdu["type"]!, (string)pdu["state_key"]!)] = Id(pdu) };
}

using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms.Tests.Rules;

/// <summary>
/// Data-driven tests over every case in tests/vectors/event-auth/cases.json (from
/// matrix-org/gomatrixserverlib, Apache-2.0). Per the file's <c>semantics</c>: given the
/// auth_events as the auth state, every event in <c>allowed</c> must pass the auth rules and every
/// event in <c>not_allowed</c> must fail. Cases are enumerated from the file, not listed here.
/// </summary>
public class EventAuthVectorTests
{
    private static readonly Lazy<JsonObject> Vectors = new(() =>
    {
        string path = Path.Combine(AppContext.BaseDirectory, "vectors", "event-auth", "cases.json");
        return JsonNode.Parse(File.ReadAllText(path))!.AsObject();
    });

    private static JsonArray Cases => Vectors.Value["cases"]!.AsArray();

    public static IEnumerable<object[]> CaseRows()
    {
        for (int i = 0; i < Cases.Count; i++)
        {
            yield return [(string)Cases[i]!["go_test"]!, i];
        }
    }

    [Fact]
    public void Vector_file_has_no_unhandled_sections()
    {
        var handled = new HashSet<string> { "source", "semantics", "cases" };
        foreach (var (name, _) in Vectors.Value)
        {
            Assert.Contains(name, handled);
        }
        Assert.NotEmpty(Cases);
        foreach (var c in Cases)
        {
            foreach (var (name, _) in c!["case"]!.AsObject())
            {
                Assert.Contains(name, new[] { "auth_events", "allowed", "not_allowed" });
            }
        }
    }

    [Theory]
    [MemberData(nameof(CaseRows))]
    public void Case(string goTest, int index)
    {
        var entry = Cases[index]!.AsObject();
        Assert.Equal(goTest, (string)entry["go_test"]!);
        var version = VersionFromConstant((string)entry["room_version_constant"]!);
        var c = entry["case"]!.AsObject();
        var state = BuildAuthState(c["auth_events"]);

        var failures = new List<string>();
        int checkedEvents = 0;
        foreach (var (list, expectAllowed) in new[] { ("allowed", true), ("not_allowed", false) })
        {
            if (c[list] is not JsonArray events)
            {
                continue;
            }
            foreach (var ev in events)
            {
                checkedEvents++;
                var pdu = ev!.AsObject();
                var result = EventAuth.Check(pdu, version, key => state.GetValueOrDefault(key));
                if (result.Allowed != expectAllowed)
                {
                    string why = pdu["unsigned"]?["not_allowed"]?.GetValue<string>() ?? "";
                    failures.Add($"{list} event {pdu["event_id"]} ({pdu["type"]}): got Allowed={result.Allowed} ({result.Reason}); expected {(expectAllowed ? "allowed" : "rejected: " + why)}");
                }
            }
        }
        Assert.True(checkedEvents > 0, "case has no events");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>"RoomVersionV10" -> room version "10".</summary>
    private static RoomVersion VersionFromConstant(string constant)
    {
        const string prefix = "RoomVersionV";
        Assert.StartsWith(prefix, constant);
        var version = RoomVersion.Find(constant[prefix.Length..]);
        Assert.NotNull(version);
        return version;
    }

    /// <summary>
    /// auth_events maps a name to either one event (has "type") or to events keyed by state key
    /// (e.g. "member": { "@u1:a": {...} }). Keys come from the events' own type and state key;
    /// a single event without a state_key is keyed with "".
    /// </summary>
    private static Dictionary<(string, string), JsonObject> BuildAuthState(JsonNode? authEvents)
    {
        var state = new Dictionary<(string, string), JsonObject>();
        if (authEvents is not JsonObject obj)
        {
            Assert.True(authEvents is null || authEvents is JsonArray { Count: 0 } || authEvents is JsonObject, "auth_events has an unknown shape");
            return state;
        }
        foreach (var (_, value) in obj)
        {
            var v = value!.AsObject();
            if (v.ContainsKey("type"))
            {
                state[((string)v["type"]!, (string?)v["state_key"] ?? "")] = v;
            }
            else
            {
                foreach (var (stateKey, ev) in v)
                {
                    var e = ev!.AsObject();
                    state[((string)e["type"]!, stateKey)] = e;
                }
            }
        }
        return state;
    }
}

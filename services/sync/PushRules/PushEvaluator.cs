using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Conduit.Common;

namespace Conduit.Sync.PushRules;

/// <summary>The event being evaluated, with its properties looked up once per path whoever asks.</summary>
public sealed class PushEvent(JsonObject json)
{
    readonly Dictionary<string, JsonNode?> _paths = new(StringComparer.Ordinal);

    public JsonObject Json { get; } = json;
    public string? Sender { get; } = json["sender"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
    public string? RoomId { get; } = json["room_id"] is JsonValue v2 && v2.TryGetValue(out string? r) ? r : null;
    public string? Body => Property("content.body") is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>The value at a dot-separated property path (appendices, "Dot-separated property paths": "\." is a
    /// literal dot and "\\" a backslash), or null when absent.</summary>
    public JsonNode? Property(string path)
    {
        if (_paths.TryGetValue(path, out var found)) return found;
        JsonNode? node = Json;
        foreach (var part in SplitPath(path))
        {
            if (node is not JsonObject o || !o.TryGetPropertyValue(part, out node)) { node = null; break; }
        }
        _paths[path] = node;
        return node;
    }

    internal static List<string> SplitPath(string path)
    {
        var parts = new List<string>();
        var sb = new StringBuilder();
        for (var i = 0; i < path.Length; i++)
        {
            var ch = path[i];
            if (ch == '\\' && i + 1 < path.Length && path[i + 1] is '.' or '\\') sb.Append(path[++i]);
            else if (ch == '.') { parts.Add(sb.ToString()); sb.Clear(); }
            else sb.Append(ch);
        }
        parts.Add(sb.ToString());
        return parts;
    }
}

/// <summary>The room facts conditions read (room_member_count, sender_notification_permission).</summary>
public sealed record PushRoomContext(long JoinedMemberCount, long SenderPowerLevel, IReadOnlyDictionary<string, long> NotificationLevels);

/// <summary>What the matching rule asks: its actions (historical dont_notify and coalesce removed), whether they
/// notify, and the highlight tweak (true when given without a value).</summary>
public sealed record PushActions(JsonArray Actions, bool Notify, bool Highlight, string RuleId)
{
    string? _json;

    /// <summary>The actions as JSON text, serialised once (the same rule notifies many users).</summary>
    public string ActionsJson => _json ??= Actions.ToJsonString();

    /// <summary>The tweaks the actions set, for the push gateway.</summary>
    public JsonObject Tweaks()
    {
        var t = new JsonObject();
        foreach (var a in Actions)
            if (a is JsonObject o && o["set_tweak"] is JsonValue n && n.TryGetValue(out string? name))
                t[name] = o.TryGetPropertyValue("value", out var v) ? v?.DeepClone() : true;
        return t;
    }
}

/// <summary>
/// A user's push ruleset compiled for evaluation (spec: client-server-api, "Push Rules"): kinds in the order override,
/// content, room, sender, underride, rules in their order within a kind, the first enabled rule whose conditions all
/// hold decides. A condition of an unknown kind never holds (the rule is effectively disabled); a malformed rule never
/// matches. Immutable and shared: one instance serves every event until the user changes their rules.
/// </summary>
public sealed class PushEvaluator
{
    delegate bool Condition(PushEvent e, PushRoomContext room, string userId, Func<string?> displayName);

    sealed record Rule(string Id, Condition[] Conditions, PushActions Actions);

    readonly Rule[] _rules;

    PushEvaluator(Rule[] rules) => _rules = rules;

    /// <summary>Compiles a ruleset shaped as m.push_rules content ({"global": {kind: [rules]}}).</summary>
    public static PushEvaluator Compile(JsonObject ruleset)
    {
        var rules = new List<Rule>();
        if (ruleset["global"] is JsonObject global)
            foreach (var kind in DefaultPushRules.Kinds)
            {
                if (global[kind] is not JsonArray array) continue;
                foreach (var node in array)
                    if (node is JsonObject r && CompileRule(kind, r) is { } rule) rules.Add(rule);
            }
        return new PushEvaluator([.. rules]);
    }

    /// <summary>The actions of the first matching rule, or null when none matches.</summary>
    /// <param name="displayName">The user's display name in the room, asked only by contains_display_name.</param>
    public PushActions? Evaluate(PushEvent e, PushRoomContext room, string userId, Func<string?> displayName)
    {
        foreach (var rule in _rules)
        {
            var all = true;
            foreach (var c in rule.Conditions)
                if (!c(e, room, userId, displayName)) { all = false; break; }
            if (all) return rule.Actions;
        }
        return null;
    }

    static Rule? CompileRule(string kind, JsonObject r)
    {
        if (r["rule_id"] is not JsonValue idv || !idv.TryGetValue(out string? id)) return null;
        if (r["enabled"] is JsonValue ev && ev.TryGetValue(out bool enabled) && !enabled) return null;
        var actions = Actions(r["actions"] as JsonArray, id);
        Condition[]? conditions = kind switch
        {
            "override" or "underride" => r["conditions"] is JsonArray cs ? CompileConditions(cs) : r.ContainsKey("conditions") ? null : [],
            "content" => r["pattern"] is JsonValue pv && pv.TryGetValue(out string? pattern) ? [EventMatch("content.body", pattern)] : null,
            "room" => [(e, _, _, _) => e.RoomId == id],
            "sender" => [(e, _, _, _) => e.Sender == id],
            _ => null,
        };
        return conditions is null ? null : new Rule(id, conditions, actions);
    }

    static Condition[]? CompileConditions(JsonArray cs)
    {
        var list = new List<Condition>();
        foreach (var node in cs)
        {
            if (node is not JsonObject c) return null;
            list.Add(CompileCondition(c));
        }
        return [.. list];
    }

    static readonly Condition Never = (_, _, _, _) => false;

    static Condition CompileCondition(JsonObject c)
    {
        string? Str(string key) => c[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        switch (Str("kind"))
        {
            case "event_match":
                return Str("key") is { } matchKey && Str("pattern") is { } pattern ? EventMatch(matchKey, pattern) : Never;
            case "event_property_is":
                return PropertyCondition(c, Str("key"), contains: false);
            case "event_property_contains":
                return PropertyCondition(c, Str("key"), contains: true);
            case "contains_display_name":
                return (e, _, _, displayName) => e.Body is { } body && displayName() is { Length: > 0 } name && WordContains(body, name);
            case "room_member_count":
                return Str("is") is { } spec && MemberCount(spec) is { } test ? (_, room, _, _) => test(room.JoinedMemberCount) : Never;
            case "sender_notification_permission":
                return Str("key") is { } level ? SenderPermission(level) : Never;
            default:
                return Never;
        }
    }

    static Condition PropertyCondition(JsonObject c, string? key, bool contains)
    {
        if (key is null || !c.TryGetPropertyValue("value", out var value) || !IsScalar(value)) return Never;
        var v = value?.DeepClone();
        if (contains) return (e, _, _, _) => e.Property(key) is JsonArray arr && arr.Any(item => IsScalar(item) && ScalarEquals(item, v));
        return (e, _, _, _) => e.Property(key) is var p && IsScalar(p) && (p is not null || HasPath(e, key)) && ScalarEquals(p, v);
    }

    // Without a level for the key, "room" is 50 (the power levels' default); any other key cannot be met.
    static Condition SenderPermission(string key)
        => (_, room, _, _) => room.NotificationLevels.TryGetValue(key, out var needed)
            ? room.SenderPowerLevel >= needed : key == "room" && room.SenderPowerLevel >= 50;

    /// <summary>Whether a null value came from a JSON null at the path (event_property_is may match null).</summary>
    static bool HasPath(PushEvent e, string path)
    {
        var parts = PushEvent.SplitPath(path);
        JsonNode? node = e.Json;
        for (var i = 0; i < parts.Count; i++)
        {
            if (node is not JsonObject o || !o.TryGetPropertyValue(parts[i], out var next)) return false;
            node = next;
        }
        return true;
    }

    static bool IsScalar(JsonNode? n) => n switch
    {
        null => true,
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null => true,
            JsonValueKind.Number => v.TryGetInteger(out var l) && Math.Abs(l) <= (1L << 53) - 1,
            _ => false,
        },
        _ => false,
    };

    static bool ScalarEquals(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return a is null && b is null;
        var (ka, kb) = (a.GetValueKind(), b.GetValueKind());
        if (ka != kb) return false;
        return ka switch
        {
            JsonValueKind.String => a.GetValue<string>() == b.GetValue<string>(),
            JsonValueKind.Number => a.TryGetInteger(out var x) && b.TryGetInteger(out var y) && x == y,
            _ => true,
        };
    }

    static Func<long, bool>? MemberCount(string spec)
    {
        var (op, rest) = spec.StartsWith("==", StringComparison.Ordinal) ? ("==", spec[2..])
            : spec.StartsWith(">=", StringComparison.Ordinal) ? (">=", spec[2..])
            : spec.StartsWith("<=", StringComparison.Ordinal) ? ("<=", spec[2..])
            : spec.StartsWith('<') ? ("<", spec[1..])
            : spec.StartsWith('>') ? (">", spec[1..])
            : ("==", spec);
        if (!long.TryParse(rest, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)) return null;
        return op switch
        {
            "==" => c => c == n,
            ">=" => c => c >= n,
            "<=" => c => c <= n,
            "<" => c => c < n,
            _ => c => c > n,
        };
    }

    static PushActions Actions(JsonArray? actions, string ruleId)
    {
        var kept = new JsonArray();
        bool notify = false, highlight = false;
        foreach (var a in actions ?? [])
        {
            // Historical actions are ignored (spec: "Historical Actions").
            if (a is JsonValue s && s.TryGetValue(out string? name))
            {
                if (name is "dont_notify" or "coalesce") continue;
                if (name == "notify") notify = true;
            }
            else if (a is JsonObject o && o["set_tweak"] is JsonValue t && t.TryGetValue(out string? tweak) && tweak == "highlight")
                highlight = !o.TryGetPropertyValue("value", out var hv) || hv is JsonValue hb && hb.TryGetValue(out bool h) && h;
            kept.Add(a?.DeepClone());
        }
        return new PushActions(kept, notify, highlight, ruleId);
    }

    // ---- glob matching (appendices, "Glob-style matching"): * any run of characters, ? exactly one; case-insensitive.

    static readonly ConcurrentDictionary<(string Pattern, bool Words), Regex> Regexes = new();

    static Condition EventMatch(string key, string pattern)
    {
        // content.body: the pattern matches any substring between word boundaries (spec, "event_match").
        var words = key == "content.body";
        Func<string, bool> matches;
        // Most patterns have no wildcard (every default rule's): a plain comparison, no regex to build per user.
        if (pattern.AsSpan().IndexOfAny('*', '?') < 0)
            matches = words ? s => WordContains(s, pattern) : s => string.Equals(s, pattern, StringComparison.OrdinalIgnoreCase);
        else
        {
            var regex = GlobRegex(pattern, words);
            matches = regex.IsMatch;
        }
        return (e, _, _, _) => e.Property(key) is JsonValue v && v.TryGetValue(out string? s) && matches(s);
    }

    static bool IsWordChar(char c) => c is (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_';

    /// <summary>Whether <paramref name="literal"/> occurs in <paramref name="text"/> (case-insensitively) between word
    /// boundaries: the start or end of the text, or a character not in [A-Za-z0-9_].</summary>
    static bool WordContains(string text, string literal)
    {
        if (literal.Length == 0) return false;
        for (var at = text.IndexOf(literal, StringComparison.OrdinalIgnoreCase); at >= 0;
             at = at + 1 < text.Length ? text.IndexOf(literal, at + 1, StringComparison.OrdinalIgnoreCase) : -1)
        {
            var end = at + literal.Length;
            if ((at == 0 || !IsWordChar(text[at - 1])) && (end == text.Length || !IsWordChar(text[end]))) return true;
        }
        return false;
    }

    /// <summary>The regex of a glob with wildcards, shared by every rule that has it.</summary>
    static Regex GlobRegex(string pattern, bool words)
    {
        if (Regexes.Count > 10_000) Regexes.Clear();
        return Regexes.GetOrAdd((pattern, words), k =>
        {
            var sb = new StringBuilder();
            foreach (var ch in k.Pattern)
                sb.Append(ch switch { '*' => ".*", '?' => ".", _ => Regex.Escape(ch.ToString()) });
            var body = sb.ToString();
            var full = k.Words ? $"(?:^|[^A-Za-z0-9_]){body}(?:$|[^A-Za-z0-9_])" : $"^{body}$";
            // Non-backtracking: a user's pattern cannot make evaluation slow, whatever the event body.
            return new Regex(full, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline | RegexOptions.NonBacktracking);
        });
    }

}

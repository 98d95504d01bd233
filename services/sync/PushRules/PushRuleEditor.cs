using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;

namespace Conduit.Sync.PushRules;

/// <summary>
/// Changes to a user's push ruleset (spec: client-server-api, "Push Rules: API"). Within a kind, user-defined
/// rules come before the server-default ones (rule IDs starting with '.'), except .m.rule.master, which stays first.
/// Server-default rules can be enabled, disabled and given other actions, but not created, moved or deleted.
/// </summary>
public static class PushRuleEditor
{
    public static readonly string[] Kinds = ["override", "content", "room", "sender", "underride"];

    static JsonArray KindArray(JsonObject ruleset, string kind)
    {
        if (!Kinds.Contains(kind)) throw Err.InvalidParam($"Unknown push rule kind '{kind}'");
        if (ruleset["global"] is not JsonObject global) ruleset["global"] = global = new JsonObject();
        if (global[kind] is not JsonArray arr) global[kind] = arr = new JsonArray();
        return arr;
    }

    static int IndexOf(JsonArray rules, string ruleId)
    {
        for (var i = 0; i < rules.Count; i++)
            if (rules[i]?["rule_id"]?.GetValue<string>() == ruleId) return i;
        return -1;
    }

    static JsonObject Find(JsonObject ruleset, string kind, string ruleId)
        => KindArray(ruleset, kind) is var rules && IndexOf(rules, ruleId) is var i and >= 0
            ? rules[i]!.AsObject()
            : throw Err.NotFound("Unknown push rule");

    static bool IsDefault(string ruleId) => ruleId.StartsWith('.');

    public static void Put(JsonObject ruleset, string kind, string ruleId, JsonObject body, string? before, string? after)
    {
        var rules = KindArray(ruleset, kind);
        if (IsDefault(ruleId)) throw Err.InvalidParam("Rule IDs starting with '.' are reserved for server-default rules");
        if (ruleId.Length == 0 || ruleId.Contains('/') || ruleId.Contains('\\')) throw Err.InvalidParam("Invalid rule ID");
        var actions = body.OptArray("actions") ?? throw Err.MissingParam("Missing 'actions'");
        var rule = new JsonObject { ["rule_id"] = ruleId, ["default"] = false, ["enabled"] = true, ["actions"] = actions.DeepClone() };
        switch (kind)
        {
            case "content":
                rule["pattern"] = body.OptString("pattern") ?? throw Err.MissingParam("Missing 'pattern'");
                break;
            case "override" or "underride":
                rule["conditions"] = body.OptArray("conditions")?.DeepClone() ?? new JsonArray();
                break;
            case "room":
                // The room's ID, or an alias some clients use instead (spec: the rule ID "is always the ID of the room";
                // Synapse takes any string): it matches events whose room_id equals it.
                if (!Ids.IsRoomId(ruleId) && !(ruleId.StartsWith('#') && ruleId.Contains(':'))) throw Err.InvalidParam("A room rule's ID is the room ID");
                break;
            case "sender":
                if (!Ids.IsUserId(ruleId)) throw Err.InvalidParam("A sender rule's ID is the user ID");
                break;
        }

        var existing = IndexOf(rules, ruleId);
        if (existing >= 0)
        {
            // An update keeps the rule's place and enabled state unless the client says where it goes.
            rule["enabled"] = rules[existing]!["enabled"]?.DeepClone() ?? true;
            if (before is null && after is null)
            {
                rules[existing] = rule;
                return;
            }
            rules.RemoveAt(existing);
        }
        int at;
        if (before is not null || after is not null)
        {
            var anchor = before ?? after!;
            var i = IndexOf(rules, anchor);
            if (i < 0 || IsDefault(anchor)) throw Err.Unknown($"before/after rule not found: {anchor}");
            at = before is not null ? i : i + 1;
        }
        else
        {
            // The most important user-defined rule: first, after .m.rule.master.
            at = rules.Count > 0 && rules[0]?["rule_id"]?.GetValue<string>() == ".m.rule.master" ? 1 : 0;
        }
        rules.Insert(at, rule);
    }

    public static void Delete(JsonObject ruleset, string kind, string ruleId)
    {
        var rules = KindArray(ruleset, kind);
        var i = IndexOf(rules, ruleId);
        if (i < 0) throw Err.NotFound("Unknown push rule");
        if (IsDefault(ruleId)) throw Err.InvalidParam("Server-default rules cannot be deleted");
        rules.RemoveAt(i);
    }

    public static void SetEnabled(JsonObject ruleset, string kind, string ruleId, bool enabled)
        => Find(ruleset, kind, ruleId)["enabled"] = enabled;

    public static void SetActions(JsonObject ruleset, string kind, string ruleId, JsonArray actions)
        => Find(ruleset, kind, ruleId)["actions"] = actions.DeepClone();
}

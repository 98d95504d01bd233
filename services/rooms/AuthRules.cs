using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;

namespace Conduit.Rooms;

/// <summary>
/// Authorization of a new local event against the room's current state, following the auth rules of room
/// versions 10 and 11 (spec: rooms/v11.md "Authorization rules", which v10 shares except for the create
/// event's creator field). Federation-received events and the other versions come with the full checker.
/// </summary>
public static class AuthRules
{
    public delegate JsonObject? StateLookup(string type, string stateKey);

    /// <summary>Throws M_FORBIDDEN with the failed rule, or returns when the event is allowed.</summary>
    public static void Check(string type, string? stateKey, string sender, JsonObject content, StateLookup state, string creator, bool hasPriorEvents)
    {
        // Rule 1: m.room.create is only the first event.
        if (type == "m.room.create")
        {
            if (hasPriorEvents) throw Err.Forbidden("The room already has a create event");
            return;
        }
        if (!hasPriorEvents) throw Err.Forbidden("The first event must be m.room.create");

        var pl = new PowerLevels(state("m.room.power_levels", ""), creator);
        string MembershipOf(string user) => state("m.room.member", user)?["membership"]?.GetValue<string>() ?? "leave";

        // Rule 4: membership changes.
        if (type == "m.room.member")
        {
            CheckMember(stateKey ?? throw Err.BadJson("Member events need a state_key"), sender, content, state, pl, creator, MembershipOf);
            return;
        }

        // Rule 5: the sender must be joined.
        if (MembershipOf(sender) != "join") throw Err.Forbidden("You are not joined to this room");

        // Rule 7: the sender's power must reach the event's level.
        var senderLevel = pl.UserLevel(sender);
        if (senderLevel < pl.EventLevel(type, stateKey is not null))
            throw Err.Forbidden($"You need power level {pl.EventLevel(type, stateKey is not null)} to send {type}");

        // Rule 8: a state key starting with '@' names the only user who may set it.
        if (stateKey is not null && stateKey.StartsWith('@') && stateKey != sender)
            throw Err.Forbidden("You may not set state keyed by another user's ID");

        if (type == "m.room.power_levels") CheckPowerLevels(content, pl, sender, senderLevel);
    }

    static void CheckMember(string target, string sender, JsonObject content, StateLookup state, PowerLevels pl, string creator, Func<string, string> membershipOf)
    {
        var membership = content["membership"]?.GetValue<string>() ?? throw Err.BadJson("Missing membership");
        var targetNow = membershipOf(target);
        var senderNow = membershipOf(sender);
        var joinRule = state("m.room.join_rules", "")?["join_rule"]?.GetValue<string>() ?? "invite";
        switch (membership)
        {
            case "join":
                if (sender != target) throw Err.Forbidden("You can only join as yourself");
                // The creator's own first join right after the create event.
                if (sender == creator && state("m.room.member", creator) is null && state("m.room.power_levels", "") is null) return;
                if (targetNow == "ban") throw Err.Forbidden("You are banned from this room");
                if (targetNow == "join") return;
                if (joinRule == "public") return;
                if (joinRule is "invite" or "knock" && targetNow == "invite") return;
                if (joinRule is "restricted" or "knock_restricted" && targetNow == "invite") return;
                throw Err.Forbidden("You are not invited to this room");
            case "invite":
                if (senderNow != "join") throw Err.Forbidden("You are not joined to this room");
                if (targetNow is "join" or "ban") throw Err.Forbidden($"The user is already {(targetNow == "join" ? "in the room" : "banned")}");
                if (pl.UserLevel(sender) < pl.Invite) throw Err.Forbidden("You do not have the power to invite");
                return;
            case "leave":
                if (sender == target)
                {
                    if (targetNow is "join" or "invite" or "knock") return;
                    throw Err.Forbidden("You are not in this room");
                }
                if (senderNow != "join") throw Err.Forbidden("You are not joined to this room");
                if (targetNow == "ban" && pl.UserLevel(sender) < pl.Ban) throw Err.Forbidden("You do not have the power to unban");
                if (targetNow != "ban" && (pl.UserLevel(sender) < pl.Kick || pl.UserLevel(sender) <= pl.UserLevel(target)))
                    throw Err.Forbidden("You do not have the power to kick this user");
                return;
            case "ban":
                if (senderNow != "join") throw Err.Forbidden("You are not joined to this room");
                if (pl.UserLevel(sender) < pl.Ban || pl.UserLevel(sender) <= pl.UserLevel(target))
                    throw Err.Forbidden("You do not have the power to ban this user");
                return;
            case "knock":
                if (sender != target) throw Err.Forbidden("You can only knock as yourself");
                if (joinRule is not ("knock" or "knock_restricted")) throw Err.Forbidden("This room does not accept knocks");
                if (targetNow is "ban" or "join" or "invite") throw Err.Forbidden("You cannot knock on this room now");
                return;
            default:
                throw Err.BadJson($"Unknown membership '{membership}'");
        }
    }

    // Rule 10 (v10+): integer-only levels; every changed level must be within the sender's own power.
    static void CheckPowerLevels(JsonObject content, PowerLevels old, string sender, long senderLevel)
    {
        if (!PowerLevels.AllIntegers(content)) throw Err.BadJson("Power levels must be integers");
        if (old.Content is null) return;
        var next = new PowerLevels(content, null);
        foreach (var key in new[] { "ban", "kick", "redact", "invite", "state_default", "events_default", "users_default" })
        {
            var before = old.Content.ContainsKey(key) ? (long?)LevelOf(old, key) : null;
            var after = content.ContainsKey(key) ? (long?)LevelOf(next, key) : null;
            if (before != after && (before > senderLevel || after > senderLevel))
                throw Err.Forbidden($"You cannot change '{key}' beyond your own power level");
        }
        CheckMap(old.Content["events"] as JsonObject, content["events"] as JsonObject, senderLevel, null, "events");
        CheckMap(old.Content["users"] as JsonObject, content["users"] as JsonObject, senderLevel, sender, "users");
    }

    static long LevelOf(PowerLevels p, string key) => key switch
    {
        "ban" => p.Ban, "kick" => p.Kick, "redact" => p.Redact, "invite" => p.Invite,
        "state_default" => p.StateDefault, "events_default" => p.EventsDefault, _ => p.UsersDefault,
    };

    static void CheckMap(JsonObject? before, JsonObject? after, long senderLevel, string? sender, string what)
    {
        var keys = new HashSet<string>();
        if (before is not null) foreach (var (k, _) in before) keys.Add(k);
        if (after is not null) foreach (var (k, _) in after) keys.Add(k);
        foreach (var k in keys)
        {
            long? b = before?[k].TryGetInteger(out var bv) == true ? bv : null;
            long? a = after?[k].TryGetInteger(out var av) == true ? av : null;
            if (b == a) continue;
            if (b > senderLevel || a > senderLevel)
                throw Err.Forbidden($"You cannot change {what} '{k}' beyond your own power level");
            // Rule 10.5: another user's level can only be changed if it is below yours.
            if (sender is not null && k != sender && b >= senderLevel)
                throw Err.Forbidden($"You cannot change the power level of {k}");
        }
    }

    /// <summary>Redacting someone else's event needs the redact level (v11: checked by the server that applies it).</summary>
    public static bool MayRedact(string sender, string originalSender, PowerLevels pl)
        => sender == originalSender || pl.UserLevel(sender) >= pl.Redact;

    /// <summary>Which server may have created a user: ours only, until federation lands.</summary>
    public static bool IsLocal(string userId, string serverName) => Ids.ServerOf(userId) == serverName;
}

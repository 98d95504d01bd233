namespace Conduit.Common.Events;

/// <summary>How event ids are formed (spec rooms/vN.md, "Event IDs").</summary>
public enum EventIdFormat
{
    /// <summary>v1, v2: "$opaque_id:domain", chosen by the originating server.</summary>
    ServerGenerated,

    /// <summary>v3: "$" + unpadded Base64 of the reference hash.</summary>
    ReferenceHashBase64,

    /// <summary>v4+: "$" + URL-safe unpadded Base64 of the reference hash.</summary>
    ReferenceHashUrlSafe,
}

/// <summary>
/// The differences between the redaction algorithms of the room versions. Each flag names one
/// rule that changed; the rooms service's redaction algorithm (Conduit.Rooms.Rules.Redaction) applies them. Named after the spec version that
/// introduced the variant (rooms/fragments/v1-, v6-, v9-, v11-redactions.md; v8 is inline in rooms/v8.md).
/// </summary>
public sealed record RedactionRules
{
    public required string Name { get; init; }

    /// <summary>Top-level <c>origin</c>, <c>membership</c> and <c>prev_state</c> survive redaction (v1-v10).</summary>
    public bool KeepOriginMembershipPrevState { get; init; }

    /// <summary><c>m.room.aliases</c> keeps <c>aliases</c> (v1-v5).</summary>
    public bool KeepAliasesContent { get; init; }

    /// <summary><c>m.room.join_rules</c> keeps <c>allow</c> (v8+).</summary>
    public bool KeepJoinRulesAllow { get; init; }

    /// <summary><c>m.room.member</c> keeps <c>join_authorised_via_users_server</c> (v9+).</summary>
    public bool KeepMemberJoinAuthorisedVia { get; init; }

    /// <summary><c>m.room.member</c> keeps <c>third_party_invite.signed</c> (v11+).</summary>
    public bool KeepMemberThirdPartyInviteSigned { get; init; }

    /// <summary><c>m.room.create</c> keeps its whole content (v11+); before, only <c>creator</c>.</summary>
    public bool KeepAllCreateContent { get; init; }

    /// <summary><c>m.room.power_levels</c> keeps <c>invite</c> (v11+).</summary>
    public bool KeepPowerLevelsInvite { get; init; }

    /// <summary><c>m.room.redaction</c> keeps <c>content.redacts</c> (v11+).</summary>
    public bool KeepRedactionRedacts { get; init; }

    public static readonly RedactionRules V1 = new()
    {
        Name = "v1",
        KeepOriginMembershipPrevState = true,
        KeepAliasesContent = true,
    };

    public static readonly RedactionRules V6 = V1 with { Name = "v6", KeepAliasesContent = false };

    public static readonly RedactionRules V8 = V6 with { Name = "v8", KeepJoinRulesAllow = true };

    public static readonly RedactionRules V9 = V8 with { Name = "v9", KeepMemberJoinAuthorisedVia = true };

    public static readonly RedactionRules V11 = V9 with
    {
        Name = "v11",
        KeepOriginMembershipPrevState = false,
        KeepMemberThirdPartyInviteSigned = true,
        KeepAllCreateContent = true,
        KeepPowerLevelsInvite = true,
        KeepRedactionRedacts = true,
    };
}

/// <summary>
/// What differs between room versions (spec rooms/v1.md .. v12.md). A pure data table:
/// each version is the previous one plus the changes its spec page lists.
/// </summary>
public sealed record RoomVersion
{
    public required string Id { get; init; }

    public required EventIdFormat EventIdFormat { get; init; }

    public required RedactionRules Redaction { get; init; }

    /// <summary>"v1" (v1), "v2" (v2-v11), "v2.1" (v12).</summary>
    public required string StateResolution { get; init; }

    /// <summary>v1, v2: events also need a signature from the event id's domain (server-server API, "Validating hashes and signatures").</summary>
    public bool RequireEventIdDomainSignature { get; init; }

    /// <summary>v5+: signing keys must be valid at the event's origin_server_ts.</summary>
    public bool EnforceKeyValidity { get; init; }

    /// <summary>v1-v5: special auth rule for m.room.aliases.</summary>
    public bool SpecialCaseAliasesAuth { get; init; }

    /// <summary>v6+: canonical JSON is strictly enforced (rooms/fragments/v6-canonical-json.md).</summary>
    public bool StrictCanonicalJson { get; init; }

    /// <summary>v6+: power_levels auth also checks the <c>notifications</c> key.</summary>
    public bool LimitNotificationsPowerLevels { get; init; }

    /// <summary>v7+: the <c>knock</c> join rule and membership.</summary>
    public bool Knock { get; init; }

    /// <summary>v8+: the <c>restricted</c> join rule.</summary>
    public bool RestrictedJoins { get; init; }

    /// <summary>v10+: the <c>knock_restricted</c> join rule.</summary>
    public bool KnockRestricted { get; init; }

    /// <summary>v10+: power level values must be integers, not strings.</summary>
    public bool IntegerOnlyPowerLevels { get; init; }

    /// <summary>v1-v10: m.room.create content carries <c>creator</c>; v11 removed it.</summary>
    public bool CreatorInCreateContent { get; init; }

    /// <summary>v11+: m.room.redaction carries <c>redacts</c> in content instead of at top level.</summary>
    public bool RedactsInContent { get; init; }

    /// <summary>v12: the room id is derived from the create event's reference hash; the create event has no room_id.</summary>
    public bool RoomIdFromCreateEvent { get; init; }

    /// <summary>v12: room creators (sender + additional_creators) have infinite power.</summary>
    public bool PrivilegedCreators { get; init; }

    public static readonly RoomVersion V1 = new()
    {
        Id = "1",
        EventIdFormat = EventIdFormat.ServerGenerated,
        Redaction = RedactionRules.V1,
        StateResolution = "v1",
        RequireEventIdDomainSignature = true,
        SpecialCaseAliasesAuth = true,
        CreatorInCreateContent = true,
    };

    public static readonly RoomVersion V2 = V1 with { Id = "2", StateResolution = "v2" };

    public static readonly RoomVersion V3 = V2 with
    {
        Id = "3",
        EventIdFormat = EventIdFormat.ReferenceHashBase64,
        RequireEventIdDomainSignature = false,
    };

    public static readonly RoomVersion V4 = V3 with { Id = "4", EventIdFormat = EventIdFormat.ReferenceHashUrlSafe };

    public static readonly RoomVersion V5 = V4 with { Id = "5", EnforceKeyValidity = true };

    public static readonly RoomVersion V6 = V5 with
    {
        Id = "6",
        Redaction = RedactionRules.V6,
        SpecialCaseAliasesAuth = false,
        StrictCanonicalJson = true,
        LimitNotificationsPowerLevels = true,
    };

    public static readonly RoomVersion V7 = V6 with { Id = "7", Knock = true };

    public static readonly RoomVersion V8 = V7 with { Id = "8", Redaction = RedactionRules.V8, RestrictedJoins = true };

    public static readonly RoomVersion V9 = V8 with { Id = "9", Redaction = RedactionRules.V9 };

    public static readonly RoomVersion V10 = V9 with { Id = "10", KnockRestricted = true, IntegerOnlyPowerLevels = true };

    public static readonly RoomVersion V11 = V10 with
    {
        Id = "11",
        Redaction = RedactionRules.V11,
        CreatorInCreateContent = false,
        RedactsInContent = true,
    };

    public static readonly RoomVersion V12 = V11 with
    {
        Id = "12",
        StateResolution = "v2.1",
        RoomIdFromCreateEvent = true,
        PrivilegedCreators = true,
    };

    public static IReadOnlyList<RoomVersion> All { get; } = [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12];

    /// <summary>The version with this exact id (e.g. "10"), or null if unknown.</summary>
    public static RoomVersion? Find(string id)
    {
        foreach (var v in All)
        {
            if (v.Id == id)
            {
                return v;
            }
        }
        return null;
    }

    public override string ToString() => Id;
}

using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

/// <summary>One backed-up session key (spec: KeyBackupData), checked.</summary>
public sealed record BackupKey(long FirstMessageIndex, long ForwardedCount, bool IsVerified, JsonObject SessionData)
{
    /// <summary>
    /// Reads a KeyBackupData object: M_MISSING_PARAM for an absent field, M_BAD_JSON for a wrong type or a negative
    /// index or count.
    /// </summary>
    public static BackupKey FromJson(JsonObject o) => new(
        NonNegative(o, "first_message_index"),
        NonNegative(o, "forwarded_count"),
        o.OptBool("is_verified") ?? throw Err.MissingParam("Missing 'is_verified'"),
        o.OptObject("session_data") ?? throw Err.MissingParam("Missing 'session_data'"));

    static long NonNegative(JsonObject o, string key)
    {
        var v = o.OptLong(key) ?? throw Err.MissingParam($"Missing '{key}'");
        return v >= 0 ? v : throw Err.BadJson($"'{key}' must be an integer of 0 or more");
    }

    public static BackupKey FromUtf8(byte[] json) => FromJson(JsonNode.Parse(json)!.AsObject());

    /// <summary>
    /// Whether this key should replace <paramref name="existing"/> for the same session, in the spec's order
    /// (client-server-api, "Server-side key backups"): a verified key beats an unverified one whatever its indexes;
    /// then the lower first_message_index; then the lower forwarded_count. A tie keeps the existing key. (Synapse
    /// compares first_message_index before honouring a newly verified key, so it can keep the worse one: #13704.)
    /// </summary>
    public bool IsBetterThan(BackupKey existing)
    {
        if (IsVerified != existing.IsVerified) return IsVerified;
        if (FirstMessageIndex != existing.FirstMessageIndex) return FirstMessageIndex < existing.FirstMessageIndex;
        return ForwardedCount < existing.ForwardedCount;
    }

    /// <summary>The stored form: the four fields of KeyBackupData and nothing else the client sent.</summary>
    public byte[] ToUtf8() => KeyBackupStore.Json(w =>
    {
        w.WriteNumber("first_message_index", FirstMessageIndex);
        w.WriteNumber("forwarded_count", ForwardedCount);
        w.WriteBoolean("is_verified", IsVerified);
        w.WritePropertyName("session_data");
        SessionData.WriteTo(w);
    });
}

/// <summary>A session key as stored: its room, its session, and its KeyBackupData JSON.</summary>
public sealed record BackupSession(string RoomId, string SessionId, byte[] Data);

/// <summary>What a change to a version's keys answers (spec: RoomKeysUpdateResponse).</summary>
public readonly record struct BackupKeysState(long Count, long Etag)
{
    public JsonObject ToJson() => new() { ["etag"] = KeyBackupStore.EtagString(Etag), ["count"] = Count };
}

/// <summary>A live (not deleted) backup version.</summary>
public sealed record BackupVersion(ulong Number, string Algorithm, JsonObject AuthData, long Count, long Etag)
{
    public string Version => Number.ToString(CultureInfo.InvariantCulture);

    public BackupKeysState State => new(Count, Etag);

    public JsonObject ToJson() => new()
    {
        ["algorithm"] = Algorithm,
        ["auth_data"] = AuthData.DeepClone(),
        ["count"] = Count,
        ["etag"] = KeyBackupStore.EtagString(Etag),
        ["version"] = Version,
    };

    internal byte[] ToUtf8() => KeyBackupStore.Json(w =>
    {
        w.WriteString("algorithm", Algorithm);
        w.WritePropertyName("auth_data");
        AuthData.WriteTo(w);
        w.WriteNumber("etag", Etag);
        w.WriteNumber("count", Count);
    });

    /// <summary>The stored record, or null for a deleted version's tombstone.</summary>
    internal static BackupVersion? FromUtf8(ulong number, byte[] json)
    {
        var o = JsonNode.Parse(json)!.AsObject();
        if (o["deleted"]?.GetValue<bool>() == true) return null;
        var authData = o["auth_data"]!.AsObject();
        o.Remove("auth_data");
        return new(number, o["algorithm"]!.GetValue<string>(), authData, o["count"]!.GetValue<long>(), o["etag"]!.GetValue<long>());
    }
}

/// <summary>
/// Server-side key backups (spec: client-server-api, "Server-side key backups"), per user: numbered versions and,
/// in each, one key per (room, session). Every key of both families starts with the user's ID, so a user can only
/// ever reach their own backups.
/// <para>
/// Each version record keeps its session count and etag (a counter raised whenever the version's keys change),
/// written in the same batch as the sessions they describe, so they are always exact: GET /room_keys/version, which
/// clients call often, reads one record instead of counting a backup of tens of thousands of sessions, and writers
/// learn the count from work they do anyway (they read each session they may replace; deletes scan what they delete).
/// </para>
/// <para>
/// A user's writes are serialised by a lock (striped by user ID; users do not otherwise wait on each other): each
/// one reads the version record and the sessions it may replace, then writes one batch. Reads of keys take the same
/// lock, so they see a request's batch whole on every backend.
/// </para>
/// </summary>
public sealed class KeyBackupStore(IKeyValueStore store, AccountStore accounts)
{
    readonly IKvMap _versions = store.Map(KeysFamilies.BackupVersions);
    readonly IKvMap _sessions = store.Map(KeysFamilies.BackupSessions);
    readonly Lock[] _stripes = [.. Enumerable.Range(0, 64).Select(_ => new Lock())];

    static readonly byte[] Tombstone = """{"deleted":true}"""u8.ToArray();

    Lock LockOf(string userId) => _stripes[(uint)StringComparer.Ordinal.GetHashCode(userId) % (uint)_stripes.Length];

    /// <summary>
    /// Versions are decimal numbers from 1 without leading zeros; any other string names no version (the spec calls
    /// it opaque, so a client may send anything, and it simply matches nothing).
    /// </summary>
    public static bool TryParseVersion(string? version, out ulong number)
        => ulong.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out number) && number > 0 && version![0] != '0';

    internal static string EtagString(long etag) => etag.ToString(CultureInfo.InvariantCulture);

    internal static byte[] Json(Action<Utf8JsonWriter> fields)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            fields(w);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static MatrixException WrongVersion(string current)
        => new("M_WRONG_ROOM_KEYS_VERSION", 403, "Wrong backup version") { Extra = new() { ["current_version"] = current } };

    static MatrixException UnknownVersion() => Err.NotFound("Unknown backup version");

    static MatrixException NoCurrentVersion() => Err.NotFound("No current backup version");

    // ---- versions

    /// <summary>Creates a version after every one the user ever had (deleted ones included) and returns it.</summary>
    public string CreateVersion(string userId, string algorithm, JsonObject authData)
    {
        lock (LockOf(userId))
        {
            // Checked under the lock DeleteAll takes once the account is deactivated: a request that got past the
            // edge before the token was revoked either runs before that deletion (and is deleted with the rest) or
            // sees the account deactivated here.
            if (accounts.IsDeactivated(userId)) throw Err.UserDeactivated();
            var last = Versions(userId).Select(v => v.Number).FirstOrDefault();
            var created = new BackupVersion(last + 1, algorithm, authData, 0, 0);
            _versions.Put(KeysFamilies.BackupVersionKey(userId, created.Number), created.ToUtf8());
            return created.Version;
        }
    }

    /// <summary>The user's versions, newest first, with null for deleted ones.</summary>
    IEnumerable<(ulong Number, BackupVersion? Live)> Versions(string userId)
    {
        var prefix = KeysFamilies.BackupUserPrefix(userId);
        foreach (var (k, v) in _versions.ScanFrom(KeysFamilies.BackupVersionKey(userId, ulong.MaxValue), prefix, reverse: true))
        {
            var number = K.ReadBigEndian(k.AsSpan(prefix.Length));
            yield return (number, BackupVersion.FromUtf8(number, v));
        }
    }

    /// <summary>The current version: the newest one not deleted (as Synapse: deleting the newest makes the one before current).</summary>
    public BackupVersion? Current(string userId) => Versions(userId).Select(v => v.Live).FirstOrDefault(v => v is not null);

    /// <summary>A live version by its string, or null (unknown, deleted, or not a version string).</summary>
    public BackupVersion? Get(string userId, string version)
        => TryParseVersion(version, out var n) && _versions.Get(KeysFamilies.BackupVersionKey(userId, n)) is { } raw
            ? BackupVersion.FromUtf8(n, raw)
            : null;

    BackupVersion Existing(string userId, string version) => Get(userId, version) ?? throw UnknownVersion();

    /// <summary>Replaces a live version's auth_data; M_NOT_FOUND if there is none, M_INVALID_PARAM if the algorithm differs.</summary>
    public void UpdateVersion(string userId, string version, string algorithm, JsonObject authData)
    {
        lock (LockOf(userId))
        {
            var v = Existing(userId, version);
            if (v.Algorithm != algorithm) throw Err.InvalidParam("Algorithm does not match");
            _versions.Put(KeysFamilies.BackupVersionKey(userId, v.Number), (v with { AuthData = authData }).ToUtf8());
        }
    }

    /// <summary>
    /// Deletes a version and its keys in one batch, leaving a tombstone. A version deleted before is no error (spec:
    /// DELETE /room_keys/version/{version}); one that never existed is M_NOT_FOUND.
    /// </summary>
    public void DeleteVersion(string userId, string version)
    {
        lock (LockOf(userId))
        {
            if (!TryParseVersion(version, out var n) || _versions.Get(KeysFamilies.BackupVersionKey(userId, n)) is not { } raw) throw UnknownVersion();
            if (BackupVersion.FromUtf8(n, raw) is null) return;
            using var b = store.CreateBatch();
            foreach (var (k, _) in _sessions.Scan(KeysFamilies.BackupSessionsPrefix(userId, n))) b.Delete(KeysFamilies.BackupSessions, k);
            b.Put(KeysFamilies.BackupVersions, KeysFamilies.BackupVersionKey(userId, n), Tombstone);
            store.Write(b);
        }
    }

    // ---- keys

    /// <summary>
    /// Stores keys in the current version, each unless the stored key for its session is as good or better
    /// (<see cref="BackupKey.IsBetterThan"/>), in one batch with the version's new count and etag. M_NOT_FOUND
    /// without any backup; M_WRONG_ROOM_KEYS_VERSION (with the current version) for any other version.
    /// </summary>
    public BackupKeysState PutKeys(string userId, string version, IEnumerable<(string RoomId, string SessionId, BackupKey Key)> keys)
    {
        lock (LockOf(userId))
        {
            var current = Current(userId) ?? throw NoCurrentVersion();
            if (!TryParseVersion(version, out var n) || n != current.Number) throw WrongVersion(current.Version);
            // A session named twice in one call is compared with the first, not counted twice.
            var chosen = new Dictionary<(string, string), BackupKey>();
            var added = 0L;
            foreach (var (roomId, sessionId, key) in keys)
            {
                var existing = chosen.TryGetValue((roomId, sessionId), out var c) ? c
                    : _sessions.Get(KeysFamilies.BackupSessionKey(userId, n, roomId, sessionId)) is { } stored ? BackupKey.FromUtf8(stored) : null;
                if (existing is not null && !key.IsBetterThan(existing)) continue;
                if (existing is null) added++;
                chosen[(roomId, sessionId)] = key;
            }
            if (chosen.Count == 0) return current.State;
            var updated = current with { Count = current.Count + added, Etag = current.Etag + 1 };
            using var b = store.CreateBatch();
            foreach (var ((roomId, sessionId), key) in chosen)
                b.Put(KeysFamilies.BackupSessions, KeysFamilies.BackupSessionKey(userId, n, roomId, sessionId), key.ToUtf8());
            b.Put(KeysFamilies.BackupVersions, KeysFamilies.BackupVersionKey(userId, n), updated.ToUtf8());
            store.Write(b);
            return updated.State;
        }
    }

    /// <summary>
    /// The keys of a live version (any, not only the current one): all of them, a room's, or one session's, in key
    /// order (grouped by room). M_NOT_FOUND for an unknown or deleted version.
    /// </summary>
    public List<BackupSession> GetKeys(string userId, string version, string? roomId = null, string? sessionId = null)
    {
        lock (LockOf(userId))
        {
            var n = Existing(userId, version).Number;
            if (roomId is not null && sessionId is not null)
                return _sessions.Get(KeysFamilies.BackupSessionKey(userId, n, roomId, sessionId)) is { } data ? [new(roomId, sessionId, data)] : [];
            var start = KeysFamilies.BackupSessionsPrefix(userId, n).Length;
            return _sessions.Scan(Prefix(userId, n, roomId))
                .Select(e => K.Split(e.Key.AsSpan(start)) is [var room, var session] ? new BackupSession(room, session, e.Value) : throw new InvalidDataException("Bad backup session key"))
                .ToList();
        }
    }

    static byte[] Prefix(string userId, ulong version, string? roomId)
        => roomId is null ? KeysFamilies.BackupSessionsPrefix(userId, version) : KeysFamilies.BackupRoomPrefix(userId, version, roomId);

    /// <summary>
    /// Deletes keys of a live version (any, not only the current one): all, a room's, or one session's, in one batch
    /// with the version's new count and etag (unchanged if nothing was there). M_NOT_FOUND for an unknown version.
    /// </summary>
    public BackupKeysState DeleteKeys(string userId, string version, string? roomId = null, string? sessionId = null)
    {
        lock (LockOf(userId))
        {
            var v = Existing(userId, version);
            using var b = store.CreateBatch();
            if (roomId is not null && sessionId is not null)
            {
                var key = KeysFamilies.BackupSessionKey(userId, v.Number, roomId, sessionId);
                if (_sessions.Contains(key)) b.Delete(KeysFamilies.BackupSessions, key);
            }
            else
            {
                foreach (var (k, _) in _sessions.Scan(Prefix(userId, v.Number, roomId))) b.Delete(KeysFamilies.BackupSessions, k);
            }
            if (b.Count == 0) return v.State;
            var updated = v with { Count = v.Count - b.Count, Etag = v.Etag + 1 };
            b.Put(KeysFamilies.BackupVersions, KeysFamilies.BackupVersionKey(userId, v.Number), updated.ToUtf8());
            store.Write(b);
            return updated.State;
        }
    }

    /// <summary>Deletes every version (tombstones too) and every key of the user, in one batch: account deactivation.</summary>
    public void DeleteAll(string userId)
    {
        lock (LockOf(userId))
        {
            var prefix = KeysFamilies.BackupUserPrefix(userId);
            using var b = store.CreateBatch();
            foreach (var (k, _) in _sessions.Scan(prefix)) b.Delete(KeysFamilies.BackupSessions, k);
            foreach (var (k, _) in _versions.Scan(prefix)) b.Delete(KeysFamilies.BackupVersions, k);
            if (b.Count > 0) store.Write(b);
        }
    }
}

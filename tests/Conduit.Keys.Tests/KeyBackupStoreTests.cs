using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class BackupKeyRuleTests
{
    static BackupKey Key(bool verified, long index, long forwarded) => new(index, forwarded, verified, new JsonObject());

    // Spec, "Server-side key backups": is_verified first, then the lower first_message_index, then the lower
    // forwarded_count; a tie keeps the stored key.
    [Theory]
    [InlineData(true, 10, 5, false, 0, 0, true)]   // verified beats unverified whatever its indexes (Synapse #13704 kept the old one)
    [InlineData(false, 0, 0, true, 10, 5, false)]  // an unverified key never replaces a verified one
    [InlineData(false, 0, 9, false, 1, 0, true)]   // same verification: the lower first_message_index wins over forwarded_count
    [InlineData(true, 2, 0, true, 1, 9, false)]
    [InlineData(false, 3, 1, false, 3, 2, true)]   // same index: the lower forwarded_count
    [InlineData(false, 3, 2, false, 3, 1, false)]
    [InlineData(true, 3, 2, true, 3, 2, false)]    // a tie keeps the stored key
    public void Better_key_follows_the_spec_order(bool newVerified, long newIndex, long newForwarded, bool oldVerified, long oldIndex, long oldForwarded, bool replaces)
        => Assert.Equal(replaces, Key(newVerified, newIndex, newForwarded).IsBetterThan(Key(oldVerified, oldIndex, oldForwarded)));

    [Theory]
    [InlineData("""{"forwarded_count":0,"is_verified":true,"session_data":{}}""", "M_MISSING_PARAM")]
    [InlineData("""{"first_message_index":0,"is_verified":true,"session_data":{}}""", "M_MISSING_PARAM")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"session_data":{}}""", "M_MISSING_PARAM")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"is_verified":true}""", "M_MISSING_PARAM")]
    [InlineData("""{"first_message_index":-1,"forwarded_count":0,"is_verified":true,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":-1,"is_verified":true,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":"0","forwarded_count":0,"is_verified":true,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":1.5,"forwarded_count":0,"is_verified":true,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":99999999999999999999,"is_verified":true,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"is_verified":"true","session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"is_verified":1,"session_data":{}}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":"x"}""", "M_BAD_JSON")]
    [InlineData("""{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":[]}""", "M_BAD_JSON")]
    public void Bad_key_data_is_refused(string json, string errcode)
    {
        var o = Conduit.Common.Http.RequestJson.ParseObject(Encoding.UTF8.GetBytes(json));
        Assert.Equal(errcode, Assert.Throws<MatrixException>(() => BackupKey.FromJson(o)).ErrCode);
    }

    [Fact]
    public void Stored_form_keeps_the_four_fields_only()
    {
        var o = JsonNode.Parse("""{"first_message_index":3,"forwarded_count":1,"is_verified":false,"session_data":{"ciphertext":"c","mac":"m"},"extra":1}""")!.AsObject();
        var stored = JsonNode.Parse(BackupKey.FromJson(o).ToUtf8())!.AsObject();
        Assert.Equal(["first_message_index", "forwarded_count", "is_verified", "session_data"], stored.Select(p => p.Key).Order());
        Assert.Equal("c", stored["session_data"]!["ciphertext"]!.GetValue<string>());
        Assert.Equal(3, BackupKey.FromUtf8(BackupKey.FromJson(o).ToUtf8()).FirstMessageIndex);
    }

    [Theory]
    [InlineData("1", true)]
    [InlineData("42", true)]
    [InlineData("0", false)]
    [InlineData("01", false)]
    [InlineData("-1", false)]
    [InlineData("+1", false)]
    [InlineData(" 1", false)]
    [InlineData("1.0", false)]
    [InlineData("abc", false)]
    [InlineData("", false)]
    [InlineData("99999999999999999999", false)]
    public void Only_canonical_version_numbers_name_a_version(string version, bool valid)
        => Assert.Equal(valid, KeyBackupStore.TryParseVersion(version, out _));
}

public sealed class KeyBackupStoreTests : IDisposable
{
    const string Alice = "@alice:test.local", Bob = "@bob:test.local";
    const string Alg = "m.megolm_backup.v1.curve25519-aes-sha2";
    const string Room1 = "!one:test.local", Room2 = "!two:test.local";

    readonly IKeyValueStore _kv = KvStore.Open("memory", "", KeysFamilies.All);
    readonly AccountStore _accounts;
    readonly KeyBackupStore _backups;

    public KeyBackupStoreTests()
    {
        _accounts = TestStores.Accounts(_kv);
        _backups = new KeyBackupStore(_kv, _accounts);
        _accounts.Register("alice", "pw", null, null, inhibitLogin: true, ip: null);
        _accounts.Register("bob", "pw", null, null, inhibitLogin: true, ip: null);
    }

    public void Dispose() => _kv.Dispose();

    static JsonObject Auth(string key = "pk") => new() { ["public_key"] = key };

    static BackupKey Key(long index, long forwarded = 0, bool verified = false, string data = "d")
        => new(index, forwarded, verified, new JsonObject { ["ciphertext"] = data });

    static (string, string, BackupKey) At(string room, string session, BackupKey key) => (room, session, key);

    static string Ciphertext(BackupSession s) => JsonNode.Parse(s.Data)!["session_data"]!["ciphertext"]!.GetValue<string>();

    static MatrixException Fails(Action a) => Assert.Throws<MatrixException>(a);

    [Fact]
    public void Versions_are_numbered_from_one_and_never_reused()
    {
        Assert.Null(_backups.Current(Alice));
        Assert.Equal("1", _backups.CreateVersion(Alice, Alg, Auth()));
        Assert.Equal("2", _backups.CreateVersion(Alice, Alg, Auth("pk2")));
        var current = _backups.Current(Alice)!;
        Assert.Equal(("2", "pk2", 0L, 0L), (current.Version, current.AuthData["public_key"]!.GetValue<string>(), current.Count, current.Etag));
        // Deleting the newest makes the one before current; the next version still comes after the deleted one.
        _backups.DeleteVersion(Alice, "2");
        Assert.Equal("1", _backups.Current(Alice)!.Version);
        Assert.Null(_backups.Get(Alice, "2"));
        Assert.Equal("3", _backups.CreateVersion(Alice, Alg, Auth()));
        // Another user's numbering is their own.
        Assert.Equal("1", _backups.CreateVersion(Bob, Alg, Auth()));
    }

    [Fact]
    public void Deleting_a_version_twice_succeeds_but_an_unknown_one_is_not_found()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.DeleteVersion(Alice, "1");
        _backups.DeleteVersion(Alice, "1");
        Assert.Null(_backups.Current(Alice));
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.DeleteVersion(Alice, "2")).ErrCode);
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.DeleteVersion(Alice, "x")).ErrCode);
    }

    [Fact]
    public void Update_replaces_auth_data_only_and_needs_the_same_algorithm()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room1, "s1", Key(0))]);
        _backups.UpdateVersion(Alice, "1", Alg, Auth("new"));
        var v = _backups.Get(Alice, "1")!;
        Assert.Equal(("new", 1L, 1L), (v.AuthData["public_key"]!.GetValue<string>(), v.Count, v.Etag));
        Assert.Equal("M_INVALID_PARAM", Fails(() => _backups.UpdateVersion(Alice, "1", "other.algorithm", Auth())).ErrCode);
        Assert.Equal("new", _backups.Get(Alice, "1")!.AuthData["public_key"]!.GetValue<string>());
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.UpdateVersion(Alice, "2", Alg, Auth())).ErrCode);
        _backups.DeleteVersion(Alice, "1");
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.UpdateVersion(Alice, "1", Alg, Auth())).ErrCode);
    }

    [Fact]
    public void Count_and_etag_follow_the_keys()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        var s = _backups.PutKeys(Alice, "1", [At(Room1, "s1", Key(5)), At(Room1, "s2", Key(5)), At(Room2, "s3", Key(5))]);
        Assert.Equal(new BackupKeysState(3, 1), s);
        // A worse or equal key changes nothing: same etag.
        Assert.Equal(s, _backups.PutKeys(Alice, "1", [At(Room1, "s1", Key(6)), At(Room1, "s2", Key(5))]));
        // A better key replaces the stored one: new etag, same count.
        s = _backups.PutKeys(Alice, "1", [At(Room1, "s1", Key(1, data: "better"))]);
        Assert.Equal(new BackupKeysState(3, 2), s);
        Assert.Equal("better", Ciphertext(Assert.Single(_backups.GetKeys(Alice, "1", Room1, "s1"))));
        Assert.Equal(s, _backups.Get(Alice, "1")!.State);
        // Deleting at each level: one session, one room, all.
        Assert.Equal(new BackupKeysState(2, 3), _backups.DeleteKeys(Alice, "1", Room1, "s2"));
        Assert.Equal(new BackupKeysState(2, 3), _backups.DeleteKeys(Alice, "1", Room1, "nope"));
        Assert.Equal(new BackupKeysState(1, 4), _backups.DeleteKeys(Alice, "1", Room2));
        Assert.Equal(new BackupKeysState(0, 5), _backups.DeleteKeys(Alice, "1"));
        Assert.Equal(new BackupKeysState(0, 5), _backups.DeleteKeys(Alice, "1"));
        Assert.Empty(_backups.GetKeys(Alice, "1"));
    }

    [Fact]
    public void A_session_named_twice_in_one_call_counts_once_and_the_better_key_stays()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        var s = _backups.PutKeys(Alice, "1", [At(Room1, "s1", Key(3, data: "first")), At(Room1, "s1", Key(1, data: "better")), At(Room1, "s1", Key(2, data: "worse"))]);
        Assert.Equal(1, s.Count);
        Assert.Equal("better", Ciphertext(Assert.Single(_backups.GetKeys(Alice, "1"))));
    }

    [Fact]
    public void The_better_key_rule_applies_to_stored_keys()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0, 0, verified: false, data: "unverified"))]);
        // Verified beats a lower index (Synapse's #13704 case).
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(10, 3, verified: true, data: "verified"))]);
        Assert.Equal("verified", Ciphertext(_backups.GetKeys(Alice, "1", Room1, "s")[0]));
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0, 0, verified: false, data: "unverified again"))]);
        Assert.Equal("verified", Ciphertext(_backups.GetKeys(Alice, "1", Room1, "s")[0]));
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(10, 1, verified: true, data: "fewer forwards"))]);
        Assert.Equal("fewer forwards", Ciphertext(_backups.GetKeys(Alice, "1", Room1, "s")[0]));
    }

    [Fact]
    public void Keys_go_only_to_the_current_version()
    {
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0))])).ErrCode);
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0))]);
        _backups.CreateVersion(Alice, Alg, Auth());
        foreach (var wrong in new[] { "1", "3", "x", "02" })
        {
            var e = Fails(() => _backups.PutKeys(Alice, wrong, [At(Room1, "s", Key(0))]));
            Assert.Equal(("M_WRONG_ROOM_KEYS_VERSION", 403, "2"), (e.ErrCode, e.Status, e.Extra!["current_version"]!.GetValue<string>()));
        }
        // The older version can still be read and have keys deleted.
        Assert.Single(_backups.GetKeys(Alice, "1"));
        Assert.Equal(0, _backups.DeleteKeys(Alice, "1").Count);
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.GetKeys(Alice, "3")).ErrCode);
    }

    [Fact]
    public void Deleting_a_version_deletes_its_keys()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0))]);
        _backups.DeleteVersion(Alice, "1");
        Assert.Equal("M_NOT_FOUND", Fails(() => _backups.GetKeys(Alice, "1")).ErrCode);
        Assert.Empty(_kv.Map(KeysFamilies.BackupSessions).Scan(KeysFamilies.BackupUserPrefix(Alice)));
    }

    [Fact]
    public void Keys_are_grouped_by_room_and_users_never_see_each_other()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.CreateVersion(Bob, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room2, "b", Key(0)), At(Room1, "a", Key(0)), At(Room1, "c", Key(0))]);
        Assert.Equal(["!one:test.local/a", "!one:test.local/c", "!two:test.local/b"], _backups.GetKeys(Alice, "1").Select(s => s.RoomId + "/" + s.SessionId));
        Assert.Equal(["a", "c"], _backups.GetKeys(Alice, "1", Room1).Select(s => s.SessionId));
        Assert.Empty(_backups.GetKeys(Bob, "1"));
        Assert.Equal(0, _backups.DeleteKeys(Bob, "1").Count);
        Assert.Equal(3, _backups.Get(Alice, "1")!.Count);
    }

    [Fact]
    public void DeleteAll_removes_every_backup_and_a_deactivated_account_cannot_create_one()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.PutKeys(Alice, "1", [At(Room1, "s", Key(0))]);
        _backups.CreateVersion(Alice, Alg, Auth());
        _backups.DeleteVersion(Alice, "2");
        _backups.CreateVersion(Bob, Alg, Auth());
        _accounts.Deactivate(Alice);
        _backups.DeleteAll(Alice);
        Assert.Empty(_kv.Map(KeysFamilies.BackupVersions).Scan(KeysFamilies.BackupUserPrefix(Alice)));
        Assert.Empty(_kv.Map(KeysFamilies.BackupSessions).Scan(KeysFamilies.BackupUserPrefix(Alice)));
        Assert.Equal("M_USER_DEACTIVATED", Fails(() => _backups.CreateVersion(Alice, Alg, Auth())).ErrCode);
        Assert.NotNull(_backups.Current(Bob));
    }

    [Fact]
    public void Concurrent_writers_of_one_user_keep_the_count_exact()
    {
        _backups.CreateVersion(Alice, Alg, Auth());
        // Eight devices upload at once, overlapping on some sessions: each session is counted once (the count is a
        // read-modify-write of the version record, so unserialised writers would lose updates).
        const int Devices = 8, Uploads = 200;
        using var start = new Barrier(Devices);
        var threads = Enumerable.Range(0, Devices).Select(d => new Thread(() =>
        {
            start.SignalAndWait();
            for (var i = 0; i < Uploads; i++)
                _backups.PutKeys(Alice, "1", [At(Room1, $"shared{i % 10}", Key(Devices - d)), At(Room2, $"own{d}-{i}", Key(0))]);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        var v = _backups.Get(Alice, "1")!;
        Assert.Equal(10 + Devices * Uploads, v.Count);
        Assert.Equal(v.Count, _backups.GetKeys(Alice, "1").Count);
        Assert.All(_backups.GetKeys(Alice, "1", Room1), s => Assert.Equal(1, BackupKey.FromUtf8(s.Data).FirstMessageIndex));
    }

    [Fact]
    public void Version_numbers_past_255_keep_their_order()
    {
        // The 8-byte version may hold 0xFF, the separator byte: keys stay unambiguous because the field is fixed-width.
        for (var i = 0; i < 256; i++) _backups.CreateVersion(Alice, Alg, Auth());
        Assert.Equal("256", _backups.Current(Alice)!.Version);
        _backups.PutKeys(Alice, "256", [At(Room1, "s", Key(0))]);
        Assert.Single(_backups.GetKeys(Alice, "256"));
        Assert.Empty(_backups.GetKeys(Alice, "255"));
        _backups.DeleteVersion(Alice, "256");
        Assert.Equal("255", _backups.Current(Alice)!.Version);
    }
}

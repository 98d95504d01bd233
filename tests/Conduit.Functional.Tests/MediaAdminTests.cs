using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using static Conduit.Functional.Tests.MatrixClient;

namespace Conduit.Functional.Tests;

/// <summary>Synapse's media admin API through the edge (services/media/README.md, "Deleting media").</summary>
public abstract class MediaAdminTests(ServerFixture server)
{
    public const string AdminLocalpart = "media_admin";
    public const string Config = $"rate_limits = {{ enabled = false }}\nadmins = [\"@{AdminLocalpart}:test.local\"]";
    const string Admin = "/_synapse/admin/v1";
    const string Authed = "/_matrix/client/v1/media";

    // One admin account per server, registered by whichever test asks first.
    static readonly ConcurrentDictionary<string, Lazy<Task<MatrixClient>>> Admins = new();
    Task<MatrixClient> AdminClient() => Admins.GetOrAdd(server.BaseUrl, _ => new(() => Register(server, AdminLocalpart))).Value;

    sealed record Answer(HttpStatusCode Status, byte[] Bytes)
    {
        public JsonObject Json => JsonNode.Parse(Bytes)!.AsObject();
        public override string ToString() => $"{(int)Status} {Encoding.UTF8.GetString(Bytes)}";
    }

    async Task<Answer> Send(string method, string path, string? token, HttpContent? content = null)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), server.BaseUrl + path) { Content = content };
        if (token is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var resp = await server.Http.SendAsync(req);
        return new Answer(resp.StatusCode, await resp.Content.ReadAsByteArrayAsync());
    }

    static Answer Ok(Answer a)
    {
        Assert.True(a.Status == HttpStatusCode.OK, a.ToString());
        return a;
    }

    static void Error(Answer a, HttpStatusCode status, string errcode)
        => Assert.True(a.Status == status && a.Json["errcode"]?.GetValue<string>() == errcode, $"expected {(int)status} {errcode}, got {a}");

    /// <summary>Uploads and returns the media ID (local server).</summary>
    async Task<string> Upload(MatrixClient u, string text, string? name = null)
    {
        var c = new ByteArrayContent(Encoding.UTF8.GetBytes(text));
        c.Headers.ContentType = new MediaTypeHeaderValue("text/plain");
        var r = Ok(await Send("POST", "/_matrix/media/v3/upload" + (name is null ? "" : "?filename=" + E(name)), u.Token, c));
        return r.Json["content_uri"]!.GetValue<string>()[$"mxc://{server.ServerName}/".Length..];
    }

    Task<Answer> Download(MatrixClient u, string serverName, string mediaId)
        => Send("GET", $"{Authed}/download/{serverName}/{mediaId}?timeout_ms=0", u.Token);

    /// <summary>A non-admin is refused before anything happens; without a token, M_MISSING_TOKEN.</summary>
    async Task Refused(MatrixClient user, string method, string path)
    {
        Error(await Send(method, path, user.Token), HttpStatusCode.Forbidden, "M_FORBIDDEN");
        Error(await Send(method, path, null), HttpStatusCode.Unauthorized, "M_MISSING_TOKEN");
    }

    [Fact]
    public async Task Deleting_one_media_makes_it_404_and_keeps_a_copy_of_the_same_bytes()
    {
        var admin = await AdminClient();
        var u = await Register(server);
        var id = await Upload(u, "delete me, shared");
        var twin = await Upload(u, "delete me, shared");
        Ok(await Download(u, server.ServerName, id));
        await Refused(u, "DELETE", $"{Admin}/media/{server.ServerName}/{id}");
        Ok(await Download(u, server.ServerName, id));

        var r = Ok(await Send("DELETE", $"{Admin}/media/{server.ServerName}/{id}", admin.Token));
        Assert.Equal(1, r.Json["total"]!.GetValue<int>());
        Assert.Equal(id, r.Json["deleted_media"]![0]!.GetValue<string>());
        Error(await Download(u, server.ServerName, id), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("GET", $"{Authed}/thumbnail/{server.ServerName}/{id}?width=32&height=32&timeout_ms=0", u.Token), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal("delete me, shared", Encoding.UTF8.GetString(Ok(await Download(u, server.ServerName, twin)).Bytes));
        Error(await Send("DELETE", $"{Admin}/media/{server.ServerName}/{id}", admin.Token), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("DELETE", $"{Admin}/media/{server.ServerName}/bad!id", admin.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }

    [Fact]
    public async Task A_users_media_is_listed_and_deleted_by_page()
    {
        var admin = await AdminClient();
        var u = await Register(server);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await Upload(u, $"user media {i} {u.UserId}", $"f{i}.txt"));
            await Task.Delay(5); // distinct created_ts
        }
        var path = $"{Admin}/users/{E(u.UserId)}/media";
        await Refused(u, "GET", path);
        await Refused(u, "DELETE", path);

        var list = Ok(await Send("GET", path + "?limit=2", admin.Token)).Json;
        Assert.Equal(3, list["total"]!.GetValue<int>());
        Assert.Equal(2, list["next_token"]!.GetValue<int>());
        var media = list["media"]!.AsArray();
        Assert.Equal(ids[..2], media.Select(m => m!["media_id"]!.GetValue<string>()));
        Assert.Equal("f0.txt", media[0]!["upload_name"]!.GetValue<string>());
        Assert.Equal("text/plain", media[0]!["media_type"]!.GetValue<string>());
        Assert.True(media[0]!["media_length"]!.GetValue<long>() > 0);
        Assert.True(media[0]!["created_ts"]!.GetValue<long>() > 0);
        var back = Ok(await Send("GET", path + "?from=2&dir=b", admin.Token)).Json;
        Assert.Equal([ids[0]], back["media"]!.AsArray().Select(m => m!["media_id"]!.GetValue<string>()));
        Assert.Null(back["next_token"]);
        Error(await Send("GET", path + "?order_by=nonsense", admin.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
        Error(await Send("GET", $"{Admin}/users/{E("@someone:other.example")}/media", admin.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");

        var deleted = Ok(await Send("DELETE", path, admin.Token)).Json;
        Assert.Equal(3, deleted["total"]!.GetValue<int>());
        Assert.Equal(ids.Order(), deleted["deleted_media"]!.AsArray().Select(m => m!.GetValue<string>()).Order());
        foreach (var id in ids) Error(await Download(u, server.ServerName, id), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Assert.Equal(0, Ok(await Send("GET", path, admin.Token)).Json["total"]!.GetValue<int>());
    }

    [Fact]
    public async Task Quarantined_media_answers_404_local_or_remote()
    {
        var admin = await AdminClient();
        var u = await Register(server);
        var id = await Upload(u, $"quarantine me {u.UserId}");
        await Refused(u, "POST", $"{Admin}/media/quarantine/{server.ServerName}/{id}");
        Ok(await Download(u, server.ServerName, id));
        Assert.Empty(Ok(await Send("POST", $"{Admin}/media/quarantine/{server.ServerName}/{id}", admin.Token, new StringContent("{}"))).Json);
        Error(await Download(u, server.ServerName, id), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Error(await Send("GET", $"/_matrix/media/v3/download/{server.ServerName}/{id}", null), HttpStatusCode.NotFound, "M_NOT_FOUND");
        // Remote media never seen here: blocked without being fetched.
        Ok(await Send("POST", $"{Admin}/media/quarantine/other.example/remoteId", admin.Token));
        Error(await Download(u, "other.example", "remoteId"), HttpStatusCode.NotFound, "M_NOT_FOUND");
    }

    [Fact]
    public async Task Purges_before_a_date_delete_what_was_last_accessed_before_it()
    {
        var admin = await AdminClient();
        var u = await Register(server);
        var old = await Upload(u, $"old {u.UserId}");
        var avatar = await Upload(u, $"avatar {u.UserId}");
        var roomAvatar = await Upload(u, $"room avatar {u.UserId}");
        var cut = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1;
        await Task.Delay(20);
        var fresh = await Upload(u, $"fresh {u.UserId}");
        Ok(await Send("PUT", $"/_matrix/client/v3/profile/{Uri.EscapeDataString(u.UserId)}/avatar_url", u.Token,
            new StringContent($$"""{"avatar_url":"mxc://{{server.ServerName}}/{{avatar}}"}""", System.Text.Encoding.UTF8, "application/json")));
        await u.CreateRoom(new JsonObject
        {
            ["initial_state"] = new JsonArray(new JsonObject { ["type"] = "m.room.avatar", ["state_key"] = "", ["content"] = new JsonObject { ["url"] = $"mxc://{server.ServerName}/{roomAvatar}" } }),
        });
        await Refused(u, "POST", $"{Admin}/media/delete?before_ts={cut}&keep_profiles=false");
        await Refused(u, "POST", $"{Admin}/purge_media_cache?before_ts={cut}");
        Error(await Send("POST", $"{Admin}/media/delete?keep_profiles=false", admin.Token), HttpStatusCode.BadRequest, "M_MISSING_PARAM");
        Ok(await Download(u, server.ServerName, old));

        // keep_profiles (true by default): a user's avatar and a room's avatar stay, the rest older than the cut goes.
        var r = Ok(await Send("POST", $"{Admin}/media/delete?before_ts={cut}", admin.Token)).Json;
        var deleted = r["deleted_media"]!.AsArray().Select(m => m!.GetValue<string>()).ToList();
        Assert.Contains(old, deleted);
        Assert.DoesNotContain(fresh, deleted);
        Assert.DoesNotContain(avatar, deleted);
        Assert.DoesNotContain(roomAvatar, deleted);
        Error(await Download(u, server.ServerName, old), HttpStatusCode.NotFound, "M_NOT_FOUND");
        Ok(await Download(u, server.ServerName, avatar));
        Ok(await Download(u, server.ServerName, roomAvatar));
        Ok(await Download(u, server.ServerName, fresh));

        // keep_profiles=false: the avatars go too.
        deleted = Ok(await Send("POST", $"{Admin}/media/delete?before_ts={cut}&keep_profiles=false", admin.Token)).Json["deleted_media"]!.AsArray().Select(m => m!.GetValue<string>()).ToList();
        Assert.Contains(avatar, deleted);
        Assert.Contains(roomAvatar, deleted);
        Ok(await Download(u, server.ServerName, fresh));
        // No remote media is cached in this test server: nothing to purge, and local media is not touched.
        Assert.Equal(0, Ok(await Send("POST", $"{Admin}/purge_media_cache?before_ts={DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 60_000}", admin.Token)).Json["deleted"]!.GetValue<int>());
        Ok(await Download(u, server.ServerName, fresh));
    }

    [Fact]
    public async Task Statistics_count_each_users_uploads()
    {
        var admin = await AdminClient();
        var u = await Register(server);
        await Upload(u, "12345");
        await Upload(u, "1234567890");
        var path = $"{Admin}/statistics/users/media";
        await Refused(u, "GET", path);
        var r = Ok(await Send("GET", path + "?search_term=" + E(u.UserId[1..u.UserId.IndexOf(':')]), admin.Token)).Json;
        Assert.Equal(1, r["total"]!.GetValue<int>());
        var row = r["users"]![0]!;
        Assert.Equal(u.UserId, row["user_id"]!.GetValue<string>());
        Assert.Equal(2, row["media_count"]!.GetValue<int>());
        Assert.Equal(15, row["media_length"]!.GetValue<long>());
        var all = Ok(await Send("GET", path + "?order_by=media_count&dir=b", admin.Token)).Json;
        Assert.Contains(all["users"]!.AsArray(), x => x!["user_id"]!.GetValue<string>() == u.UserId);
        Error(await Send("GET", path + "?order_by=bad", admin.Token), HttpStatusCode.BadRequest, "M_INVALID_PARAM");
    }
}

public sealed class MediaAdminAllInOneFixture : AllInOneFixture
{
    protected override string ExtraConfig => MediaAdminTests.Config;
}

public sealed class MediaAdminSplitFixture : SplitFixture
{
    protected override string ExtraConfig => MediaAdminTests.Config;
}

public sealed class AllInOneMediaAdminTests(MediaAdminAllInOneFixture f) : MediaAdminTests(f), IClassFixture<MediaAdminAllInOneFixture>;

public sealed class SplitMediaAdminTests(MediaAdminSplitFixture f) : MediaAdminTests(f), IClassFixture<MediaAdminSplitFixture>;

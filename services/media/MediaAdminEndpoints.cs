using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conduit.Media;

/// <summary>
/// Synapse's admin API for media (element-hq.github.io/synapse: "Media Admin API", "Users' media usage statistics"),
/// for server admins only: delete one media, a user's media, local media before a date, purge the remote media cache,
/// quarantine (block) a media ID, list a user's media, per-user upload statistics. Deletion goes through
/// <see cref="MediaStore.DeleteMany"/> (records in one batch, files once unreferenced).
/// </summary>
public sealed class MediaAdminEndpoints(MediaStore store, Protos.Keys.Keys.KeysClient keys, Protos.Rooms.Rooms.RoomsClient rooms)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.Map(RouteTable.AdminPurgeMediaCache, PurgeMediaCache);
        app.Map(RouteTable.AdminDeleteMediaBefore, DeleteBefore);
        app.Map(RouteTable.AdminDeleteMedia, DeleteOne);
        app.Map(RouteTable.AdminQuarantineMedia, Quarantine);
        app.Map(RouteTable.AdminUserMedia, UserMedia);
        app.Map(RouteTable.AdminUserMediaStatistics, Statistics);
    }

    // POST /_synapse/admin/v1/purge_media_cache?before_ts=: cached copies of remote media last accessed before then.
    async Task PurgeMediaCache(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var before = RequiredTs(ctx, "before_ts");
        var deleted = store.DeleteInChunks(store.LastAccessedBefore(before, local: false));
        await ctx.Response.WriteJsonAsync(new JsonObject { ["deleted"] = deleted.Count });
    }

    // POST /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=: local media last accessed before then.
    async Task DeleteBefore(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var before = RequiredTs(ctx, "before_ts");
        var sizeGt = ctx.Request.QueryLong("size_gt", 0);
        var keepProfiles = ctx.Request.QueryBool("keep_profiles") ?? true;
        var candidates = store.LastAccessedBefore(before, local: true, sizeGt);
        // keep_profiles (Synapse's default): media used as a user's avatar (keys service) or in a room's state as an
        // avatar (rooms service) stays; asked once, after the candidates were chosen.
        if (keepProfiles && candidates.Count > 0)
        {
            var inUse = new HashSet<string>(StringComparer.Ordinal);
            inUse.UnionWith((await keys.ProfileMediaAsync(new Protos.Keys.ProfileMediaRequest(), cancellationToken: ctx.RequestAborted)).MxcUris);
            inUse.UnionWith((await rooms.RoomMediaAsync(new Protos.Rooms.RoomMediaRequest(), cancellationToken: ctx.RequestAborted)).MxcUris);
            candidates = candidates.Where(m => !inUse.Contains(m.Mxc)).ToList();
        }
        var deleted = store.DeleteInChunks(candidates);
        await WriteDeleted(ctx, deleted.Select(d => d.MediaId));
    }

    // DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}: local media, or our cached copy of remote media.
    async Task DeleteOne(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var (serverName, mediaId) = MediaEndpoints.MediaRef(ctx);
        if (!store.Delete(serverName, mediaId)) throw Err.NotFound("Unknown media");
        await WriteDeleted(ctx, [mediaId]);
    }

    // POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}: blocked for good, its bytes deleted.
    async Task Quarantine(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var (serverName, mediaId) = MediaEndpoints.MediaRef(ctx);
        store.Quarantine(serverName, mediaId, Caller.Required(ctx).UserId);
        await ctx.Response.WriteJsonAsync(new JsonObject());
    }

    // GET (list) and DELETE /_synapse/admin/v1/users/{userId}/media?from=&limit=&order_by=&dir=
    async Task UserMedia(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var userId = ctx.Route("userId");
        if (!Ids.IsUserId(userId)) throw Err.InvalidParam("Invalid user ID");
        if (Ids.ServerOf(userId) != store.ServerName) throw Err.InvalidParam("Can only look up local users");
        var from = (int)ctx.Request.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)ctx.Request.QueryLong("limit", 100, 0, int.MaxValue);
        var orderBy = ctx.Request.Query("order_by") ?? "created_ts";
        Func<MediaRecord, IComparable?> key = orderBy switch
        {
            "created_ts" => r => r.CreatedTs,
            "last_access_ts" => r => r.LastAccessTs,
            "media_id" => r => r.MediaId,
            "upload_name" => r => r.FileName ?? "",
            "media_length" => r => r.Size,
            "media_type" => r => r.ContentType ?? "",
            // Quarantined media is deleted here, and nothing is marked safe: every row has the same value.
            "quarantined_by" or "safe_from_quarantine" => r => 0,
            _ => throw Err.InvalidParam("Unknown value for 'order_by'"),
        };
        var all = store.UploadsOf(userId);
        // Stable sort: ties keep the upload order, as media_by_user lists them.
        var ordered = ctx.Request.QueryForwards() ? all.OrderBy(key).ToList() : all.OrderByDescending(key).ToList();
        var page = ordered.Skip(from).Take(limit).ToList();
        if (HttpMethods.IsDelete(ctx.Request.Method))
        {
            var deleted = store.DeleteInChunks(page);
            await WriteDeleted(ctx, deleted.Select(d => d.MediaId));
            return;
        }
        var body = new JsonObject
        {
            ["media"] = new JsonArray([.. page.Select(r => (JsonNode)new JsonObject
            {
                ["created_ts"] = r.CreatedTs,
                ["last_access_ts"] = r.LastAccessTs,
                ["media_id"] = r.MediaId,
                ["media_length"] = r.Size,
                ["media_type"] = r.ContentType ?? "application/octet-stream",
                ["quarantined_by"] = null,
                ["safe_from_quarantine"] = false,
                ["upload_name"] = r.FileName,
            })]),
            ["total"] = all.Count,
        };
        if (from + page.Count < all.Count) body["next_token"] = from + page.Count;
        await ctx.Response.WriteJsonAsync(body);
    }

    // GET /_synapse/admin/v1/statistics/users/media?from=&limit=&order_by=&dir=&from_ts=&until_ts=&search_term=
    async Task Statistics(HttpContext ctx)
    {
        Caller.Admin(ctx);
        var from = (int)ctx.Request.QueryLong("from", 0, 0, int.MaxValue);
        var limit = (int)ctx.Request.QueryLong("limit", 100, 0, int.MaxValue);
        var fromTs = ctx.Request.QueryLong("from_ts", 0);
        var untilTs = ctx.Request.QueryLong("until_ts", long.MaxValue);
        if (untilTs <= fromTs) throw Err.InvalidParam("'until_ts' must be greater than 'from_ts'");
        var search = ctx.Request.Query("search_term");
        if (search is { Length: 0 }) throw Err.InvalidParam("'search_term' must not be empty");
        var orderBy = ctx.Request.Query("order_by") ?? "user_id";
        Func<(string UserId, int Count, long Length), IComparable> key = orderBy switch
        {
            // No display names here (profiles are the keys service's): displayname orders by user ID.
            "user_id" or "displayname" => s => s.UserId,
            "media_length" => s => s.Length,
            "media_count" => s => s.Count,
            _ => throw Err.InvalidParam("Unknown value for 'order_by'"),
        };
        var stats = store.UploadStatistics(fromTs, untilTs)
            .Where(s => search is null || s.UserId.Contains(search, StringComparison.OrdinalIgnoreCase))
            .OrderBy(s => s.UserId, StringComparer.Ordinal).ToList();
        var ordered = ctx.Request.QueryForwards() ? stats.OrderBy(key).ToList() : stats.OrderByDescending(key).ToList();
        var page = ordered.Skip(from).Take(limit).ToList();
        var body = new JsonObject
        {
            ["users"] = new JsonArray([.. page.Select(s => (JsonNode)new JsonObject
            {
                ["user_id"] = s.UserId,
                ["displayname"] = null,
                ["media_count"] = s.Count,
                ["media_length"] = s.Length,
            })]),
            ["total"] = stats.Count,
        };
        if (from + page.Count < stats.Count) body["next_token"] = from + page.Count;
        await ctx.Response.WriteJsonAsync(body);
    }

    static Task WriteDeleted(HttpContext ctx, IEnumerable<string> mediaIds)
    {
        var ids = new JsonArray([.. mediaIds.Select(id => (JsonNode)id)]);
        return ctx.Response.WriteJsonAsync(new JsonObject { ["deleted_media"] = ids, ["total"] = ids.Count });
    }

    static long RequiredTs(HttpContext ctx, string name)
        => ctx.Request.Query(name) is null ? throw Err.MissingParam($"Missing '{name}'") : ctx.Request.QueryLong(name, 0);
}

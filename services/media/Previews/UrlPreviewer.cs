using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Microsoft.Extensions.Logging;

namespace Conduit.Media.Previews;

/// <summary>URL previews (GET /_matrix/client/v1/media/preview_url). Not written yet.</summary>
public sealed class UrlPreviewer(MediaStore store, GlobalConfig config, ILogger<UrlPreviewer> log)
{
    public Task<JsonObject> PreviewAsync(string userId, string url, CancellationToken ct)
    {
        _ = (store, config, log, userId, url, ct);
        throw Err.Unrecognized();
    }
}

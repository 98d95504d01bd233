using Conduit.Common.Routing;

namespace Conduit.Media;

/// <summary>
/// The media service. Content repository endpoints (/_matrix/media, /_matrix/client/v1/media) are not
/// implemented yet: the route table routes none to it, so they answer 404 M_UNRECOGNIZED.
/// </summary>
public static class MediaService
{
    public static readonly ServiceModule Module = new(Service.Media, [], _ => { }, _ => { }, null, null);
}

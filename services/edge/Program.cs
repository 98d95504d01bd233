using Conduit.Common.Config;
using Conduit.Edge;

// conduit            all-in-one: the edge and every service in one process
// conduit --role R   one part of a split deployment (edge, keys, rooms, sync, federation, media)
var role = ConduitHost.AllInOne;
for (var i = 0; i < args.Length; i++)
    if (args[i] == "--role" && i + 1 < args.Length) role = args[++i].ToLowerInvariant();

try
{
    var app = ConduitHost.Build(ConfigLoader.Load(), role, args);
    await app.RunAsync();
    return 0;
}
catch (ConfigException e)
{
    Console.Error.WriteLine($"conduit: {e.Message}");
    return 2;
}

using Conduit.Common.Config;
using Conduit.Common.Storage;
using Conduit.Keys.E2ee;

namespace Conduit.Keys.Tests;

static class TestStores
{
    /// <summary>An account store over <paramref name="kv"/> with its E2EE stores, as the service composes them.</summary>
    public static AccountStore Accounts(IKeyValueStore kv, GlobalConfig? config = null)
    {
        var e2ee = new E2eeStore(new KeysStream(kv));
        return new AccountStore(kv, config ?? new GlobalConfig { ServerName = "test.local" }, e2ee, new CrossSigning(e2ee));
    }
}

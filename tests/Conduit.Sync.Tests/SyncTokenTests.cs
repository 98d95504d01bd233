using Conduit.Common;
using Conduit.Sync;

namespace Conduit.Sync.Tests;

public sealed class SyncTokenTests
{
    [Fact]
    public void FormatAndParse_RoundTrip()
    {
        var t = new SyncToken(5, 3);
        Assert.Equal("s5_3_0_0_0_0", t.ToString());
        Assert.Equal(t, SyncToken.Parse("s5_3"));
        Assert.Equal(new SyncToken(5, 3), SyncToken.Parse(t.ToString()));
    }

    [Fact]
    public void Parse_ReadsBothPositions()
    {
        var t = SyncToken.Parse("s123_45")!.Value;
        Assert.Equal(123, t.Rooms);
        Assert.Equal(45, t.AccountData);
    }

    [Fact]
    public void KeysSlot_RoundTrips_AndOldTwoSlotTokensReadKeysZero()
    {
        Assert.Equal(new SyncToken(1, 2, 3), SyncToken.Parse(new SyncToken(1, 2, 3).ToString()));
        Assert.Equal(0, SyncToken.Parse("s7_8")!.Value.Keys);
    }

    [Fact]
    public void PresenceSlot_RoundTrips_AndOldFiveSlotTokensReadPresenceZero()
    {
        var t = new SyncToken(1, 2, 3, 4, 5, 6);
        Assert.Equal("s1_2_3_4_5_6", t.ToString());
        Assert.Equal(t, SyncToken.Parse(t.ToString()));
        Assert.Equal(new SyncToken(1, 2, 3, 4, 5), SyncToken.Parse("s1_2_3_4_5"));
        Assert.Equal(0, SyncToken.Parse("s1_2_3_4_5")!.Value.Presence);
    }

    [Fact]
    public void OldTokenWithoutAccountDataSlot_ReadsAccountDataZero()
    {
        var t = SyncToken.Parse("s5")!.Value;
        Assert.Equal(5, t.Rooms);
        Assert.Equal(0, t.AccountData);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void NoToken_IsNull(string? s) => Assert.Null(SyncToken.Parse(s));

    [Theory]
    [InlineData("x5_3")]
    [InlineData("5_3")]
    [InlineData("s")]
    [InlineData("sabc")]
    [InlineData("s5_x")]
    [InlineData("s-1_0")]
    [InlineData("s5_-2")]
    [InlineData("s5_")]
    [InlineData("t12")]
    public void InvalidToken_IsInvalidParam(string s)
    {
        var e = Assert.Throws<MatrixException>(() => SyncToken.Parse(s));
        Assert.Equal("M_INVALID_PARAM", e.ErrCode);
        Assert.Equal(400, e.Status);
    }
}

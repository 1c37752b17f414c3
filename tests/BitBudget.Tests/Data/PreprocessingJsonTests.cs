using BitBudget.Data;

namespace BitBudget.Tests.Data;

/// <summary>
/// Preprocessing JSON is part of the decoded-image cache key and of every data hash the measurement store keys on, so
/// moving it to the source-generated JSON context must not change one byte of it.
/// </summary>
public class PreprocessingJsonTests
{
    // Captured from the reflection-based serializer (commit c723763, before the source-generated context).
    [Theory]
    [InlineData("cifar10", """{"resize_shorter":null,"center_crop":null,"scale":0.003921569,"mean":[0.4914,0.4822,0.4465],"std":[0.2023,0.1994,0.201],"channel_order":"rgb","layout":"nchw","grey":false}""")]
    [InlineData("imagenet", """{"resize_shorter":256,"center_crop":224,"scale":0.003921569,"mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225],"channel_order":"rgb","layout":"nchw","grey":false}""")]
    [InlineData("mnist-bgr-nhwc", """{"resize_shorter":null,"center_crop":null,"scale":1,"mean":[0],"std":[1],"channel_order":"bgr","layout":"nhwc","grey":true}""")]
    public void Fingerprint_IsTheOneTheReflectionSerializerWrote(string preset, string expected)
    {
        Preprocessing p = preset == "mnist-bgr-nhwc"
            ? Preprocessing.Mnist with { ChannelOrder = ChannelOrder.Bgr, Layout = TensorLayout.Nhwc }
            : Preprocessing.FromPreset(preset);
        Assert.Equal(expected, p.Fingerprint());
        Assert.Equal(p.Fingerprint(), Preprocessing.FromJson(p.ToJson()).Fingerprint());
    }

    [Fact]
    public void FromJson_UnknownField_IsRefusedNamingIt()
    {
        var e = Assert.Throws<BitBudgetException>(() => Preprocessing.FromJson("""{"resize_shorter": 256, "resizeShorter": 256}""", "p.json"));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Contains("resizeShorter", e.Message);
    }
}

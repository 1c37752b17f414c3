using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Graph;

public class OnnxModelTests
{
    [Fact]
    public void LoadSave_ResNet20_LogitsBitIdenticalOnRealImages()
    {
        using var dir = new Assets.TempDir();
        OnnxModel model = OnnxModel.Load(Assets.ResNet20);
        model.Save(dir.File("copy.onnx"));
        OnnxModel copy = OnnxModel.Load(dir.File("copy.onnx"));
        (float[] images, _) = Assets.EranCifar(1);
        float[] original = OrtHelpers.Run(File.ReadAllBytes(Assets.ResNet20), "input", images, [1, 3, 32, 32]);
        float[] roundTrip = OrtHelpers.Run(copy.ToBytes(), "input", images, [1, 3, 32, 32]);
        Assert.Equal(original, roundTrip);
        Assert.Equal(model.Proto.OpsetImport, copy.Proto.OpsetImport);
        Assert.Equal(model.Proto.ProducerName, copy.Proto.ProducerName);
    }

    [Fact]
    public void LoadSave_SqueezeNet_LogitsBitIdentical()
    {
        using var dir = new Assets.TempDir();
        OnnxModel.Load(Assets.SqueezeNet).Save(dir.File("copy.onnx"));
        float[] input = OrtHelpers.Deterministic(2 * 3 * 224 * 224);
        float[] original = OrtHelpers.Run(File.ReadAllBytes(Assets.SqueezeNet), "data", input, [2, 3, 224, 224]);
        float[] roundTrip = OrtHelpers.Run(File.ReadAllBytes(dir.File("copy.onnx")), "data", input, [2, 3, 224, 224]);
        Assert.Equal(original, roundTrip);
    }

    [Fact]
    public void Save_KeepsMetadataAndUnknownFields()
    {
        OnnxModel model = TinyModels.ConvBatchNorm();
        model.Proto.MetadataProps.Add(new StringStringEntryProto { Key = "author", Value = "tests" });
        byte[] bytes = model.ToBytes();
        // Append a field this schema does not know (number 999, varint 42) as a newer ONNX version might write.
        byte[] unknown = [0xB8, 0x3E, 42];
        OnnxModel reloaded = OnnxModel.Parse([.. bytes, .. unknown]);
        byte[] written = reloaded.ToBytes();
        Assert.Equal("tests", reloaded.Proto.MetadataProps[0].Value);
        Assert.Equal(unknown, written[^3..]);
    }

    [Fact]
    public void DynamicBatch_ResNet20_Batch64EqualsSingleRuns()
    {
        (OnnxModel prepared, _) = ModelPreparer.Prepare(OnnxModel.Load(Assets.ResNet20));
        Assert.Equal(-1, prepared.InputShape[0]);
        (float[] images, _) = Assets.EranCifar(64);
        byte[] bytes = prepared.ToBytes();
        float[] batched = OrtHelpers.Run(bytes, "input", images, [64, 3, 32, 32]);
        Assert.Equal(640, batched.Length);
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 1 };
        for (int n = 0; n < 64; n++)
        {
            float[] single = OrtHelpers.Run(bytes, "input", images[(n * 3072)..((n + 1) * 3072)], [1, 3, 32, 32]);
            for (int k = 0; k < 10; k++) { Assert.Equal(single[k], batched[n * 10 + k], 1e-4f); }
        }
    }

    [Fact]
    public void DynamicBatch_Mnist8_BatchOf64Runs()
    {
        (OnnxModel prepared, _) = ModelPreparer.Prepare(OnnxModel.Load(Assets.Mnist8));
        float[] input = OrtHelpers.Deterministic(64 * 784);
        for (int i = 0; i < input.Length; i++) { input[i] = (input[i] + 1) * 127.5f; }
        float[] batched = OrtHelpers.Run(prepared.ToBytes(), "Input3", input, [64, 1, 28, 28]);
        float[] original = OrtHelpers.Run(File.ReadAllBytes(Assets.Mnist8), "Input3", input[(5 * 784)..(6 * 784)], [1, 1, 28, 28]);
        for (int k = 0; k < 10; k++) { Assert.Equal(original[k], batched[50 + k], 1e-3f); }
    }
}

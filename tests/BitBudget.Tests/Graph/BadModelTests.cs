using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Graph;

public class BadModelTests
{
    static int Cli(params string[] args) => BitBudget.Cli.Program.Run(args);

    [Fact]
    public void MissingFile_FileNotFound()
    {
        var e = Assert.Throws<BitBudgetException>(() => OnnxModel.Load("/nonexistent/model.onnx"));
        Assert.Equal(ErrorKind.FileNotFound, e.Kind);
        Assert.Equal("Model file '/nonexistent/model.onnx' does not exist.", e.Message);
        Assert.Equal(10, Cli("inspect", "/nonexistent/model.onnx"));
    }

    [Fact]
    public void TextFile_NotOnnx()
    {
        using var dir = new Assets.TempDir();
        File.WriteAllText(dir.File("notes.onnx"), "this is not a model\n");
        var e = Assert.Throws<BitBudgetException>(() => OnnxModel.Load(dir.File("notes.onnx")));
        Assert.Equal(ErrorKind.NotOnnx, e.Kind);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(11, Cli("inspect", dir.File("notes.onnx")));
    }

    [Fact]
    public void TruncatedModel_Truncated()
    {
        using var dir = new Assets.TempDir();
        byte[] bytes = File.ReadAllBytes(Assets.ResNet20);
        File.WriteAllBytes(dir.File("half.onnx"), bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<BitBudgetException>(() => OnnxModel.Load(dir.File("half.onnx")));
        Assert.Equal(ErrorKind.TruncatedModel, e.Kind);
        Assert.Equal(12, Cli("inspect", dir.File("half.onnx")));
    }

    [Fact]
    public void NoQuantizableLayer_NoQuantizableLayers()
    {
        using var dir = new Assets.TempDir();
        Model([Node("Relu", ["x"], ["y"])], [], Value("x", -1, 4), Value("y", -1, 4)).Save(dir.File("relu.onnx"));
        var e = Assert.Throws<BitBudgetException>(() => ModelInspector.Inspect(OnnxModel.Load(dir.File("relu.onnx"))));
        Assert.Equal(ErrorKind.NoQuantizableLayers, e.Kind);
        Assert.Equal(13, Cli("inspect", dir.File("relu.onnx")));
    }

    [Fact]
    public void ExternalData_Rejected()
    {
        using var dir = new Assets.TempDir();
        OnnxModel model = ConvBatchNorm();
        TensorProto w = model.Graph.Initializer[0];
        w.ClearRawData();
        w.DataLocation = TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "weights.bin" });
        model.Save(dir.File("external.onnx"));
        var e = Assert.Throws<BitBudgetException>(() => OnnxModel.Load(dir.File("external.onnx")));
        Assert.Equal(ErrorKind.ExternalData, e.Kind);
        Assert.Contains("'w'", e.Message);
        Assert.Equal(14, Cli("inspect", dir.File("external.onnx")));
    }

    [Fact]
    public void Inspect_RealModel_ExitsZero()
    {
        Assert.Equal(0, Cli("inspect", Assets.Mnist8, "--json"));
    }
}

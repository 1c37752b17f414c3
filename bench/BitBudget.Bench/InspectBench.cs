using BitBudget.Graph;

namespace BitBudget.Bench;

/// <summary>How long load, preparation and inventory take, against a bare protobuf parse of the same file.</summary>
static class InspectBench
{
    public static int Run(string[] args)
    {
        Console.WriteLine($"{"model",-22} {"parse s",10} {"inspect s",10} {"ratio",7}");
        foreach (string relative in new[] { "cifar10/resnet20.onnx", "imagenet/squeezenet1.1.onnx", "mnist/mnist-8.onnx" })
        {
            string path = Measure.Assets(relative);
            byte[] bytes = File.ReadAllBytes(path);
            double parse = Measure.Median(5, () => OnnxModel.Parse(bytes));
            double inspect = Measure.Median(5, () => ModelInspector.Inspect(OnnxModel.Parse(bytes)));
            Console.WriteLine($"{Path.GetFileName(path),-22} {parse,10:F4} {inspect,10:F4} {inspect / parse,7:F1}");
        }
        return 0;
    }
}

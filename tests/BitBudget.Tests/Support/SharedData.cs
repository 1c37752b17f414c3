using BitBudget.Data;

namespace BitBudget.Tests.Support;

/// <summary>Real datasets loaded once per test run (decoding 10k JPEGs takes seconds; the decoded-tensor cache makes reruns fast).</summary>
public static class SharedData
{
    static readonly Dictionary<string, Dataset> s_loaded = [];

    static Dataset Get(string relative, Preprocessing pre, string split = "all", int? limit = null, int? seed = null)
    {
        string path = Assets.Require(relative);
        string key = $"{relative}|{split}|{limit}|{seed}|{pre.Fingerprint()}";
        lock (s_loaded)
        {
            if (!s_loaded.TryGetValue(key, out Dataset? data))
            {
                data = DatasetLoader.Load(new DataOptions { Path = path, Preprocessing = pre, Split = split, Limit = limit, Seed = seed });
                s_loaded[key] = data;
            }
            return data;
        }
    }

    public static Dataset Eran100 => Get("cifar10/eran-test-100.csv", Preprocessing.Cifar10);
    public static Dataset CifarTest => Get("cifar10/test", Preprocessing.Cifar10);
    public static Dataset CifarTrain(int limit, int seed) => Get("cifar10/train-5k", Preprocessing.Cifar10, limit: limit, seed: seed);
    public static Dataset MnistTest => Get("mnist/t10k-images-idx3-ubyte", Preprocessing.Mnist);
    public static Dataset ImageNet(string split = "all", int? limit = null) => Get("imagenet/samples", Preprocessing.ImageNet, split, limit);
}

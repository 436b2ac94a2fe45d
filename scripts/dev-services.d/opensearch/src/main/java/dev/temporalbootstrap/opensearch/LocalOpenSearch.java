package dev.temporalbootstrap.opensearch;

import java.io.IOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.core.Filter;
import org.apache.logging.log4j.core.appender.ConsoleAppender;
import org.apache.logging.log4j.core.config.Configurator;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilder;
import org.apache.logging.log4j.core.config.builder.api.ConfigurationBuilderFactory;
import org.apache.logging.log4j.core.config.builder.impl.BuiltConfiguration;

/**
 * A single-node OpenSearch for the dev stack (scripts/dev-services), run in a plain JVM from the
 * Maven Central artifacts: the server jar plus the plugins Temporal's visibility store needs
 * (transport-netty4 for HTTP and transport, analysis-common for normalizers and analyzers,
 * lang-painless for scripts), loaded from the classpath. No security plugin, no security manager,
 * no bootstrap checks: it listens on 127.0.0.1 only.
 *
 * <pre>
 *   java ... dev.temporalbootstrap.opensearch.LocalOpenSearch \
 *       --data-dir DIR --http-port 59200 --transport-port 59300 [-E key=value ...]
 * </pre>
 *
 * Everything it writes lives under DIR: path.home is DIR, path.data DIR/data, path.logs DIR/logs
 * (unused: logs go to the console), the config directory DIR/config (an opensearch.yml there is
 * read, settings from the command line win). Logging: WARN and above to stderr, and this class's
 * own "started"/"stopping"/"stopped" lines to stdout. "started" is printed once HTTP is up and
 * the cluster is yellow (every primary shard active, so existing indices can be searched).
 *
 * SIGTERM (or SIGINT) closes the node gracefully (waiting at most 8 s for it), then the JVM exits
 * with the usual 143 (130). Exit status 1: the node could not be created or started (e.g. a port
 * in use, or the data directory locked by another node); 2: bad arguments.
 */
public final class LocalOpenSearch {

    static final String CLUSTER_NAME = "temporal-bootstrap-dev";
    static final String NODE_NAME = "temporal-bootstrap-dev-node";
    static final String HEALTH_TIMEOUT = "60s";

    private LocalOpenSearch() {}

    public static void main(String[] args) throws Exception {
        // Before anything touches Log4j: our console-only configuration, and no Log4j shutdown
        // hook (the node logs while it closes in our own hook).
        System.setProperty("log4j.shutdownHookEnabled", "false");
        System.setProperty("log4j2.disable.jmx", "true");
        configureLogging();
        Logger log = LogManager.getLogger(LocalOpenSearch.class);

        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("LocalOpenSearch: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }

        Path home = options.dataDir.toAbsolutePath().normalize();
        for (Path dir : List.of(home, home.resolve("data"), home.resolve("logs"), home.resolve("config"))) {
            Files.createDirectories(dir);
        }
        // java.io.tmpdir should point under the data dir too (opensearch_command sets it).
        Files.createDirectories(Path.of(System.getProperty("java.io.tmpdir")));

        org.opensearch.common.settings.Settings.Builder settings = org.opensearch.common.settings.Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", CLUSTER_NAME)
            .put("node.name", NODE_NAME)
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", Integer.toString(options.httpPort))
            .put("transport.port", Integer.toString(options.transportPort))
            // The dev machine's disk may be fairly full: never turn indices read-only or refuse
            // to allocate shards because of free space.
            .put("cluster.routing.allocation.disk.threshold_enabled", "false");
        for (Map.Entry<String, String> e : options.extraSettings.entrySet()) {
            settings.put(e.getKey(), e.getValue());
        }

        org.opensearch.env.Environment environment = org.opensearch.node.InternalSettingsPreparer.prepareEnvironment(
            settings.build(),
            Collections.emptyMap(),
            home.resolve("config"),
            () -> NODE_NAME
        );

        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean closing = new AtomicBoolean();
        ClasspathNode node;
        try {
            node = new ClasspathNode(environment);
        } catch (Exception e) {
            log.error("could not create the node: {}", e.getMessage(), e);
            LogManager.shutdown();
            System.exit(1);
            return;
        }

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (closing.compareAndSet(false, true)) {
                log.info("stopping (signal)");
                closeNode(node, log);
                log.info("stopped");
            }
            stopped.countDown();
            LogManager.shutdown();
        }, "local-opensearch-shutdown"));

        try {
            node.start();
        } catch (Exception e) {
            if (closing.compareAndSet(false, true) == false) { // stopped while starting: the hook closes the node
                stopped.await();
                return;
            }
            log.error("could not start the node: {}", e.getMessage(), e);
            closeNode(node, log);
            LogManager.shutdown();
            Runtime.getRuntime().halt(1); // not exit(): the hook would wait for the latch
            return;
        }

        String http = String.valueOf(
            node.injector().getInstance(org.opensearch.http.HttpServerTransport.class).boundAddress().publishAddress()
        );
        String transport = String.valueOf(
            node.injector().getInstance(org.opensearch.transport.TransportService.class).boundAddress().publishAddress()
        );
        // HTTP answers as soon as start() returns, but after a restart the shards of existing
        // indices are still recovering (searches fail with 503): "started" means yellow, i.e.
        // every primary shard active. (The client's type changed package in 3.x: not named here.)
        org.opensearch.action.admin.cluster.health.ClusterHealthResponse health;
        try {
            health = node.client()
                .admin()
                .cluster()
                .prepareHealth()
                .setWaitForYellowStatus()
                .setTimeout(HEALTH_TIMEOUT)
                .get();
        } catch (RuntimeException e) {
            if (closing.get()) { // stopped while waiting: the hook closes the node
                stopped.await();
                return;
            }
            log.error("could not read the cluster health", e);
            health = null;
        }
        if (health != null && health.isTimedOut()) {
            log.warn("cluster health still {} after {}: some primary shards are not active", health.getStatus(), HEALTH_TIMEOUT);
        }
        log.info(
            "started: OpenSearch {} (cluster {}, health {}, http {}, transport {}, home {}, pid {})",
            org.opensearch.Version.CURRENT,
            CLUSTER_NAME,
            health == null ? "unknown" : health.getStatus().name().toLowerCase(java.util.Locale.ROOT),
            http,
            transport,
            home,
            ProcessHandle.current().pid()
        );

        // The node's own threads are daemon threads: keep the JVM alive until the hook ran.
        stopped.await();
    }

    private static void closeNode(ClasspathNode node, Logger log) {
        try {
            node.close();
            if (node.awaitClose(8, TimeUnit.SECONDS) == false) {
                log.warn("the node did not finish closing within 8s");
            }
        } catch (IOException | RuntimeException e) {
            log.warn("error while closing the node", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Console-only Log4j: WARN and above to stderr, this class's INFO lines to stdout. */
    private static void configureLogging() {
        ConfigurationBuilder<BuiltConfiguration> b = ConfigurationBuilderFactory.newConfigurationBuilder();
        b.setConfigurationName("local-opensearch");
        b.setStatusLevel(Level.ERROR);
        String pattern = "[%d{ISO8601}][%-5p][%c{1.}] %m%n";
        b.add(
            b.newAppender("stderr", "Console")
                .addAttribute("target", ConsoleAppender.Target.SYSTEM_ERR)
                .add(b.newLayout("PatternLayout").addAttribute("pattern", pattern))
        );
        b.add(
            b.newAppender("stdout", "Console")
                .addAttribute("target", ConsoleAppender.Target.SYSTEM_OUT)
                .add(b.newLayout("PatternLayout").addAttribute("pattern", pattern))
        );
        b.add(b.newRootLogger(Level.WARN).add(b.newAppenderRef("stderr")));
        // Warns on every start that dangling indices are not auto-imported (the default).
        b.add(b.newLogger("org.opensearch.gateway.DanglingIndicesState", Level.ERROR));
        // Lucene (through java.util.logging) advises --add-modules jdk.incubator.vector (3.x).
        b.add(b.newLogger("org.apache.lucene.internal.vectorization", Level.ERROR));
        // This class: INFO lines on stdout, its warnings and errors on stderr like the rest.
        b.add(
            b.newLogger(LocalOpenSearch.class.getName(), Level.INFO)
                .add(
                    b.newAppenderRef("stdout")
                        .add(
                            b.newFilter("ThresholdFilter", Filter.Result.DENY, Filter.Result.NEUTRAL)
                                .addAttribute("level", Level.WARN)
                        )
                )
                .add(b.newAppenderRef("stderr").addAttribute("level", Level.WARN))
                .addAttribute("additivity", false)
        );
        Configurator.initialize(b.build());
    }

    /**
     * Node's protected constructor loads plugins from the classpath. OpenSearch 2.x takes their
     * classes, 3.x their PluginInfo (and renamed the module plugins' classes): both are built
     * here, so that one source compiles and runs against either line.
     */
    static final class ClasspathNode extends org.opensearch.node.Node {
        /** Per plugin, the class names it has had (2.x first, then 3.x). */
        static final List<List<String>> PLUGINS = List.of(
            List.of("org.opensearch.transport.Netty4Plugin", "org.opensearch.transport.Netty4ModulePlugin"),
            List.of("org.opensearch.analysis.common.CommonAnalysisPlugin", "org.opensearch.analysis.common.CommonAnalysisModulePlugin"),
            List.of("org.opensearch.painless.PainlessPlugin", "org.opensearch.painless.PainlessModulePlugin"),
            List.of("org.opensearch.index.mapper.MapperExtrasPlugin", "org.opensearch.index.mapper.MapperExtrasModulePlugin")
        );

        @SuppressWarnings({ "rawtypes", "unchecked" })
        ClasspathNode(org.opensearch.env.Environment environment) {
            super(environment, (Collection) classpathPlugins(), true);
        }

        static Collection<?> classpathPlugins() {
            List<Class<? extends org.opensearch.plugins.Plugin>> classes = new ArrayList<>();
            for (List<String> names : PLUGINS) {
                classes.add(pluginClass(names));
            }
            if (takesPluginInfo() == false) {
                return classes;
            }
            List<org.opensearch.plugins.PluginInfo> infos = new ArrayList<>();
            for (Class<? extends org.opensearch.plugins.Plugin> c : classes) {
                infos.add(
                    new org.opensearch.plugins.PluginInfo(
                        c.getName(),
                        "classpath plugin",
                        "NA",
                        org.opensearch.Version.CURRENT,
                        "1.8",
                        c.getName(),
                        null,
                        Collections.emptyList(),
                        false
                    )
                );
            }
            return infos;
        }

        private static Class<? extends org.opensearch.plugins.Plugin> pluginClass(List<String> names) {
            for (String name : names) {
                try {
                    return Class.forName(name).asSubclass(org.opensearch.plugins.Plugin.class);
                } catch (ClassNotFoundException e) {
                    // try the next name
                }
            }
            throw new IllegalStateException("none of the plugin classes " + names + " is on the classpath");
        }

        /** True when Node(Environment, Collection<PluginInfo>, boolean) is the constructor (3.x). */
        private static boolean takesPluginInfo() {
            for (Constructor<?> c : org.opensearch.node.Node.class.getDeclaredConstructors()) {
                Type[] types = c.getGenericParameterTypes();
                if (types.length == 3
                    && types[1] instanceof ParameterizedType p
                    && p.getActualTypeArguments()[0] == org.opensearch.plugins.PluginInfo.class) {
                    return true;
                }
            }
            return false;
        }
    }

    static final class Options {
        static final String USAGE =
            "usage: LocalOpenSearch --data-dir DIR --http-port PORT --transport-port PORT [-E key=value ...]";

        Path dataDir;
        int httpPort = -1;
        int transportPort = -1;
        final Map<String, String> extraSettings = new LinkedHashMap<>();

        static Options parse(String[] args) {
            Options o = new Options();
            List<String> rest = new ArrayList<>(List.of(args));
            while (rest.isEmpty() == false) {
                String arg = rest.remove(0);
                String value = null;
                int eq = arg.indexOf('=');
                if (arg.startsWith("--") && eq > 0) {
                    value = arg.substring(eq + 1);
                    arg = arg.substring(0, eq);
                } else if (arg.startsWith("-E") && arg.length() > 2) {
                    value = arg.substring(2);
                    arg = "-E";
                }
                switch (arg) {
                    case "--data-dir":
                        o.dataDir = Path.of(value != null ? value : next(rest, arg));
                        break;
                    case "--http-port":
                        o.httpPort = port(value != null ? value : next(rest, arg), arg);
                        break;
                    case "--transport-port":
                        o.transportPort = port(value != null ? value : next(rest, arg), arg);
                        break;
                    case "-E": {
                        String kv = value != null ? value : next(rest, arg);
                        int i = kv.indexOf('=');
                        if (i <= 0) {
                            throw new IllegalArgumentException("-E wants key=value, got [" + kv + "]");
                        }
                        o.extraSettings.put(kv.substring(0, i), kv.substring(i + 1));
                        break;
                    }
                    case "-h":
                    case "--help":
                        System.out.println(USAGE);
                        System.exit(0);
                        break;
                    default:
                        throw new IllegalArgumentException("unknown argument [" + arg + "]");
                }
            }
            if (o.dataDir == null || o.httpPort < 0 || o.transportPort < 0) {
                throw new IllegalArgumentException("--data-dir, --http-port and --transport-port are required");
            }
            return o;
        }

        private static String next(List<String> rest, String arg) {
            if (rest.isEmpty()) {
                throw new IllegalArgumentException(arg + " needs a value");
            }
            return rest.remove(0);
        }

        private static int port(String s, String arg) {
            try {
                int p = Integer.parseInt(s);
                if (p < 1 || p > 65535) {
                    throw new NumberFormatException();
                }
                return p;
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(arg + " wants a port number, got [" + s + "]");
            }
        }
    }
}

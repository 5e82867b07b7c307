import re, time, pytest, threading
from tests.integration.test_misuse import run
DP = """[default]
exten => _atk-.,1,Answer()
 same => n,Set(CALLERID(num)=123)
 same => n,Exec(${EXTEN:4})
 same => n,Verbose(0,RESULT ${EXTEN} R=${R} R2=${R2} GEN=${GEN} CHILD=${CHILD} PARENT=${PARENT} DONE=${DONE} WROTE=${WROTE})
 same => n,Hangup()
exten => sleepy,1,AtkSleepy()
 same => n,Set(X=${ATKF()})
 same => n,Verbose(0,RESULT sleepy DONE=${DONE} X=${X})
"""
def start(python_asterisk):
    return python_asterisk(DP, modules=("px_demo", "px_attack2"), paths=("/work/wt/redteam/tests/pymods", "/tmp/rt/mods"))

def test_misc(python_asterisk):
    ast = start(python_asterisk)
    for app in ["AtkFwPy", "AtkDel", "AtkGc", "AtkGen", "AtkGen"]:
        print("\nOUT", run(ast, "atk-" + app))
    for c in ["atk a b c d e f g h i j k l m n o p q r s t u v w x y z aa bb", "atk x", "atk opt", "atk %s %d", "help atk"]:
        print("\nOUT CLI", c, repr(ast.cli(c)[:200]))
    print("\nOUT", [l for l in ast.log_text().splitlines() if "WARNING" in l and ("DEL" in l or "cli decl" in l)])
    print("\nOUT running", ast.running)

def test_fork(python_asterisk):
    ast = start(python_asterisk)
    print("\nOUT", run(ast, "atk-AtkFork"))
    time.sleep(3)
    print("\nOUT running", ast.running, ast.cli("core show channels")[-200:])

def test_reload_loop(python_asterisk):
    ast = start(python_asterisk)
    for i in range(20):
        ast.cli("channel originate Local/sleepy@default application Wait 2")
    for i in range(15):
        ast.cli("module reload pbx_python.so")
        ast.cli("dialplan eval function ATKF()")
    time.sleep(4)
    log = ast.log_text()
    print("\nOUT results", len(re.findall("RESULT sleepy DONE=yes X=0", log)), "internal", log.count("internal error"), "FRACK", log.count("FRACK"))
    print("\nOUT running", ast.running)

def test_shutdown_spam(python_asterisk):
    ast = start(python_asterisk)
    run(ast, "atk-AtkSpamThreads")
    time.sleep(1)
    ast.cli("core stop now", timeout=30) if False else None
    rc = ast.stop(graceful=True)
    print("\nOUT shutdown rc", rc)
